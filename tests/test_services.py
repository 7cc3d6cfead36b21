"""The service registry: names, aliases, nmap's top-ports ranking, errors, lazy loading."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import portlib
from portlib import services
from portlib.errors import ParseError, PortlibError, PortSpecError, UnknownService
from portlib.model import Protocol, Service
from portlib.services import (
    service_for_port,
    service_name,
    service_port,
    service_ports,
    top_ports,
)

ROOT = Path(__file__).resolve().parent.parent
NMAP_SERVICES = Path("/usr/share/nmap/nmap-services")


def _header_digests() -> dict[str, str]:
    """Source path -> sha256 prefix, as the data file's header records them."""
    header = Path(services.DATA_FILE).read_text(encoding="ascii").split("\n", 1)[0]
    return dict(re.findall(r"(/\S+) \([^)]*?sha256 ([0-9a-f]{16})\)", header))


def _same_sources() -> bool:
    """Whether this machine's registries are the ones the committed data came from."""
    digests = _header_digests()
    return bool(digests) and all(
        Path(path).exists() and hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] == digest
        for path, digest in digests.items()
    )


# -- lookups -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("port", "protocol", "name"),
    [
        (22, "tcp", "ssh"),
        (80, "tcp", "http"),
        (443, Protocol.TCP, "https"),
        (53, "udp", "domain"),
        (161, Protocol.UDP, "snmp"),
        (8080, "tcp", "http-alt"),  # IANA's name wins over nmap's http-proxy
        (3389, "tcp", "ms-wbt-server"),  # not in /etc/services: nmap's name
        (67, "UDP", "bootps"),
    ],
)
def test_service_name(port: int, protocol: str | Protocol, name: str) -> None:
    assert service_name(port, protocol) == name


def test_ports_without_a_name() -> None:
    assert service_name(4) is None  # nmap ranks it, but calls it "unknown"
    assert service_name(0) is None
    assert service_name(65535, "udp") is None
    assert service_for_port(4) is None


def test_service_for_port_carries_aliases_and_frequency() -> None:
    http = service_for_port(80)
    assert http == Service("http", 80, Protocol.TCP, ("www",), 0.484143)
    alt = service_for_port(8080)
    assert alt is not None and alt.aliases == ("webcache", "http-proxy")
    ssh = service_for_port(22, "udp")
    assert ssh is not None and ssh.protocol is Protocol.UDP


@pytest.mark.parametrize(
    ("name", "protocol", "port"),
    [
        ("ssh", "tcp", 22),
        ("SSH", "tcp", 22),
        (" https ", "tcp", 443),
        ("www", "tcp", 80),  # an IANA alias
        ("http-proxy", "tcp", 8080),  # nmap's name, kept as an alias
        ("http", "tcp", 80),  # http also names 8008, but 80 is its own IANA port
        ("domain", "udp", 53),
        ("postgres", "tcp", 5432),
        ("snmp", Protocol.UDP, 161),
    ],
)
def test_service_port(name: str, protocol: str, port: int) -> None:
    assert service_port(name, protocol) == port


def test_service_ports_lists_every_protocol_best_first() -> None:
    found = service_ports("http")
    assert found[0] == Service("http", 80, Protocol.TCP, ("www",), 0.484143)
    assert [s.protocol for s in found] == sorted(
        (s.protocol for s in found), key=lambda p: p != Protocol.TCP
    )
    assert any(s.port == 80 and s.protocol is Protocol.UDP for s in found)
    assert any(s.port == 8008 for s in found)


def test_service_port_for_the_wrong_protocol_says_where_it_is() -> None:
    with pytest.raises(UnknownService, match=r"no tcp service named 'bootps'.*67/udp"):
        service_port("bootps", "tcp")


def test_unknown_names_suggest_close_ones() -> None:
    with pytest.raises(UnknownService, match=r"unknown service name 'htpp'; did you mean http"):
        service_port("htpp")
    with pytest.raises(UnknownService, match=r"did you mean postgres"):
        service_port("postgress")
    with pytest.raises(UnknownService, match=r"port number"):
        service_port("80")
    with pytest.raises(UnknownService, match=r"empty"):
        service_ports("")
    with pytest.raises(UnknownService, match=r"unknown service name 'zzqqxx'$"):
        service_port("zzqqxx")


@pytest.mark.parametrize("bad", [-1, 65536, 10**9, True, "80", 80.0, None])
def test_bad_ports(bad: object) -> None:
    with pytest.raises(PortSpecError):
        service_name(bad)  # type: ignore[arg-type]
    with pytest.raises(PortSpecError):
        service_for_port(bad, "udp")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["sctp", "", "tcp6", Protocol.RAW, 6, None])
def test_bad_protocols(bad: object) -> None:
    for call in (
        lambda: service_name(80, bad),  # type: ignore[arg-type]
        lambda: service_port("ssh", bad),  # type: ignore[arg-type]
        lambda: top_ports(10, bad),  # type: ignore[arg-type]
    ):
        with pytest.raises(PortSpecError, match="protocol"):
            call()


def test_bad_names() -> None:
    with pytest.raises(PortSpecError):
        service_ports(22)  # type: ignore[arg-type]
    with pytest.raises(PortSpecError):
        service_port(None)  # type: ignore[arg-type]


def test_errors_are_catchable_as_builtin_lookup_and_value_errors() -> None:
    with pytest.raises(LookupError):
        service_port("no-such-service-here")
    with pytest.raises(ValueError):
        top_ports(0)


# -- top ports ---------------------------------------------------------------------------


def test_top_ports_start_with_the_best_known() -> None:
    assert top_ports(5) == (80, 23, 443, 21, 22)
    assert top_ports(3, "udp") == (631, 161, 137)


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_top_ports_65535_is_every_port_once(protocol: str) -> None:
    everything = top_ports(65535, protocol)
    assert len(everything) == 65535
    assert sorted(everything) == list(range(1, 65536))


def test_unranked_ports_follow_in_ascending_order() -> None:
    ranked = len(services._table(Protocol.TCP).ranked)
    assert 1000 < ranked < 65535
    tail = top_ports(65535)[ranked:]
    assert list(tail) == sorted(tail)


@pytest.mark.parametrize("bad", [0, -5, 65536, True, "100", 1.0, None])
def test_top_ports_bad_count(bad: object) -> None:
    with pytest.raises(PortSpecError, match="top_ports"):
        top_ports(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=1, max_value=65535))
def test_top_ports_are_prefixes(n: int) -> None:
    ports = top_ports(n)
    assert len(ports) == n == len(set(ports))
    assert ports == top_ports(65535)[:n]


def _nmap_top_ports(n: int, protocol: str) -> set[int]:
    """nmap's own list, from its grepable header; ``--exclude`` the only target, so
    nmap prints the list and scans nothing."""
    flag = "-sT" if protocol == "tcp" else "-sU"
    cmd = ["nmap", "-v", "-n", "-Pn", "-oG", "-", flag, "--top-ports", str(n)]
    done = subprocess.run(
        [*cmd, "--exclude", "127.0.0.1", "127.0.0.1"], capture_output=True, text=True, check=True
    )
    match = re.search(protocol.upper() + r"\((\d+);([^)]*)\)", done.stdout)
    assert match, done.stdout
    ports: set[int] = set()
    for part in filter(None, match.group(2).split(",")):
        first, _, last = part.partition("-")
        ports.update(range(int(first), int(last or first) + 1))
    assert len(ports) == int(match.group(1))
    return ports


def _need_matching_nmap() -> None:
    if shutil.which("nmap") is None:
        pytest.skip("nmap is not installed")
    if not NMAP_SERVICES.exists() or not _same_sources():
        pytest.skip("this nmap's services table differs from the one the data came from")


@pytest.mark.parametrize("n", [1, 10, 100, 1000, 2500, 4257, 6000, 8366])
def test_top_tcp_ports_match_nmap(n: int) -> None:
    _need_matching_nmap()
    assert set(top_ports(n)) == _nmap_top_ports(n, "tcp")


def test_nmap_stops_at_the_ports_it_ranks_and_portlib_goes_on() -> None:
    _need_matching_nmap()
    ranked = services._table(Protocol.TCP).ranked
    assert _nmap_top_ports(20000, "tcp") == set(ranked)
    assert len(top_ports(20000)) == 20000


@pytest.mark.parametrize("n", [1, 10, 100, 1000, 5000, 15617, 19022])
def test_top_udp_ports_match_nmap(n: int) -> None:
    _need_matching_nmap()
    if os.geteuid() != 0:
        pytest.skip("nmap -sU needs root, even to print its port list")
    assert set(top_ports(n, "udp")) == _nmap_top_ports(n, "udp")


# -- the data file and its loading -------------------------------------------------------


def test_committed_data_is_what_the_generator_makes() -> None:
    if not _same_sources():
        pytest.skip("this machine's /etc/services or nmap-services differ from the data's sources")
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_services.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_generator_merge_rules(tmp_path: Path) -> None:
    etc = tmp_path / "services"
    etc.write_text(
        "# comment\nhttp\t80/tcp\twww\t# web\nfoo\t7000/udp\nddp-thing\t4/ddp\nbar 9/tcp\n"
    )
    nmap = tmp_path / "nmap-services"
    nmap.write_text(
        "# comment\nhttp\t80/tcp\t0.500000\t# x\nhttp-alt\t8080/tcp\t0.100000\n"
        "unknown\t81/tcp\t0.100000\nsctpish\t80/sctp\t0.900000\nfoo-n\t7000/udp\t0.000000\n"
        "bar2\t9/tcp\t0.000001\n"
    )
    out = tmp_path / "out.txt"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "gen_services.py"),
            "--etc-services",
            str(etc),
            "--nmap-services",
            str(nmap),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    header, *rows = out.read_text().splitlines()
    assert header.startswith("#portlib-services 1 generated by tools/gen_services.py")
    # rank order: frequency descending, ties by port; then unranked ports ascending
    assert rows == [
        "@tcp",
        "80 500000 http www",
        "81 100000",
        "8080 100000 http-alt",
        "9 1 bar bar2",
        "@udp",
        "7000 0 foo foo-n",
    ]


def test_a_bad_data_file_is_a_parse_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bogus = tmp_path / "services.txt"
    bogus.write_text("not the format\n")
    monkeypatch.setattr(services, "DATA_FILE", bogus)
    for cached in (services._text, services._table, services._name_index, services._ranking):
        cached.cache_clear()
    try:
        with pytest.raises(ParseError, match="not a portlib services file"):
            services.service_name(80)
        monkeypatch.setattr(services, "DATA_FILE", tmp_path / "missing.txt")
        services._text.cache_clear()
        with pytest.raises(ParseError, match="cannot read"):
            services.top_ports(3)
    finally:
        monkeypatch.undo()
        for cached in (services._text, services._table, services._name_index, services._ranking):
            cached.cache_clear()
    assert services.service_name(80) == "http"


def test_loading_is_lazy() -> None:
    code = (
        "import sys, portlib, portlib.services as s\n"
        "assert s._text.cache_info().currsize == 0, 'read at import'\n"
        "s.service_name(22)\n"
        "assert s._table.cache_info().currsize == 1, 'indexed both protocols for one'\n"
        "assert s._name_index.cache_info().currsize == 0, 'built the name index for a port'\n"
        "assert s.service_port('SSH') == 22\n"
        "assert s._name_index.cache_info().currsize == 0, 'built the name index for one name'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_facade_exports() -> None:
    assert portlib.service_name is service_name
    assert portlib.service_port is service_port
    assert portlib.top_ports is top_ports


# -- properties --------------------------------------------------------------------------


@given(st.integers(), st.sampled_from(["tcp", "udp"]))
def test_any_port_gives_a_name_none_or_a_port_error(port: int, protocol: str) -> None:
    try:
        name = service_name(port, protocol)
    except PortSpecError:
        assert not 0 <= port <= 65535
    else:
        assert 0 <= port <= 65535
        assert name is None or (name and " " not in name)


@given(st.text(max_size=30), st.sampled_from(["tcp", "udp"]))
def test_any_name_gives_a_port_or_a_library_error(name: str, protocol: str) -> None:
    try:
        port = service_port(name, protocol)
    except PortlibError as exc:
        assert isinstance(exc, UnknownService)
        assert str(exc)
    else:
        assert 0 < port <= 65535
        found = service_for_port(port, protocol)
        assert found is not None
        names = {found.name.lower(), *(a.lower() for a in found.aliases)}
        assert name.strip().lower() in names


@given(st.sampled_from(sorted(services._name_index())))
def test_every_registered_name_round_trips(name: str) -> None:
    for service in service_ports(name):
        assert name in {service.name.lower(), *(a.lower() for a in service.aliases)}
        assert service_for_port(service.port, service.protocol) == service


@given(st.sampled_from(sorted(services._name_index())))
def test_the_name_search_agrees_with_the_full_index(name: str) -> None:
    assert services._find_name(name) == services._name_index()[name]
    assert service_ports(name.upper()) == service_ports(name)


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_service_names_agrees_with_service_name_on_every_port(protocol: str) -> None:
    names = services.service_names(protocol)
    for port in range(65536):
        assert names.get(port) == services.service_name(port, protocol), port
    assert names[80 if protocol == "tcp" else 53] in {"http", "domain"}
    with pytest.raises(TypeError):
        names[1] = "mine"  # type: ignore[index]
