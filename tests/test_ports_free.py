"""Kernel port policy, free-port checks and reservations: pure parsers, the rest on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import portlib
from portlib import ports
from portlib.errors import (
    NoFreePort,
    ParseError,
    PortlibError,
    PortSpecError,
    PrivilegeError,
    TargetSpecError,
)
from portlib.model import PortRanges, Protocol
from portlib.ports import (
    find_free_port,
    is_port_free,
    parse_local_port_range,
    parse_reserved_ports,
    parse_unprivileged_start,
    port_ranges,
    reserve_port,
)

pytestmark = pytest.mark.live


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _ipv6(), reason="no IPv6 loopback on this machine")


# -- pure parsers ------------------------------------------------------------------------


def test_parse_local_port_range() -> None:
    assert parse_local_port_range("32768\t60999\n") == range(32768, 61000)
    assert parse_local_port_range("1024 1024") == range(1024, 1025)
    for bad in ["", "32768", "1 2 3", "60999 32768", "0 100", "1 65536", "a b", "¹ 2"]:
        with pytest.raises(ParseError, match="ip_local_port_range"):
            parse_local_port_range(bad)


def test_parse_unprivileged_start() -> None:
    assert parse_unprivileged_start("1024\n") == 1024
    assert parse_unprivileged_start("0") == 0
    for bad in ["", "-1", "65536", "x", "1024 1", "1e3"]:
        with pytest.raises(ParseError, match="ip_unprivileged_port_start"):
            parse_unprivileged_start(bad)


def test_parse_reserved_ports() -> None:
    assert parse_reserved_ports("\n") == frozenset()
    assert parse_reserved_ports("8080\n") == {8080}
    assert parse_reserved_ports("8080,9000-9003") == {8080, 9000, 9001, 9002, 9003}
    assert parse_reserved_ports("0,65535") == {0, 65535}
    for bad in ["8080,", ",", "9010-9000", "65536", "1-65536", "a", "80-", "-80", "8080;9000"]:
        with pytest.raises(ParseError, match="ip_local_reserved_ports"):
            parse_reserved_ports(bad)


@given(st.text(max_size=40))
def test_parsers_return_or_raise_parse_error(text: str) -> None:
    for parse in (parse_local_port_range, parse_unprivileged_start, parse_reserved_ports):
        with contextlib.suppress(ParseError):  # anything else fails the test
            parse(text)


@given(st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 20)), min_size=1, max_size=8))
def test_reserved_ports_round_trip(spans: list[tuple[int, int]]) -> None:
    expected: set[int] = set()
    parts = []
    for low, width in spans:
        high = min(low + width, 65535)
        expected.update(range(low, high + 1))
        parts.append(str(low) if low == high else f"{low}-{high}")
    assert parse_reserved_ports(",".join(parts) + "\n") == expected


# -- port_ranges on a fixture tree and on the real /proc ---------------------------------


def _procfs(tmp_path: Path, **files: str) -> Path:
    sysctl = tmp_path / "sys" / "net" / "ipv4"
    sysctl.mkdir(parents=True)
    for name, text in files.items():
        (sysctl / name).write_text(text)
    return tmp_path


def test_port_ranges_from_a_fixture(tmp_path: Path) -> None:
    root = _procfs(
        tmp_path,
        ip_local_port_range="40000\t50000\n",
        ip_unprivileged_port_start="80\n",
        ip_local_reserved_ports="8080,9000-9001\n",
    )
    ranges = port_ranges(root)
    assert ranges == PortRanges(range(40000, 50001), 80, frozenset({8080, 9000, 9001}))
    assert ranges.is_privileged(79) and not ranges.is_privileged(80)
    assert ranges.is_ephemeral(50000) and not ranges.is_ephemeral(50001)
    assert port_ranges(str(root)) == ranges


def test_port_ranges_defaults_for_older_kernels(tmp_path: Path) -> None:
    root = _procfs(tmp_path, ip_local_port_range="32768 60999\n")
    ranges = port_ranges(root)
    assert ranges.unprivileged_start == 1024 == ports.DEFAULT_UNPRIVILEGED_START
    assert ranges.reserved == frozenset()


def test_port_ranges_without_the_range_file(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="ephemeral port range"):
        port_ranges(tmp_path)
    with pytest.raises(ParseError, match="ephemeral port range"):
        port_ranges(tmp_path / "does-not-exist")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("ip_local_port_range", "garbage\n"),
        ("ip_unprivileged_port_start", "x\n"),
        ("ip_local_reserved_ports", "1-\n"),
    ],
)
def test_port_ranges_malformed_files(tmp_path: Path, name: str, text: str) -> None:
    files = {
        "ip_local_port_range": "32768 60999\n",
        "ip_unprivileged_port_start": "1024\n",
        "ip_local_reserved_ports": "\n",
        name: text,
    }
    with pytest.raises(ParseError, match=name):
        port_ranges(_procfs(tmp_path, **files))


def test_port_ranges_unreadable_file(tmp_path: Path) -> None:
    root = _procfs(tmp_path, ip_local_port_range="32768 60999\n")
    (root / "sys/net/ipv4/ip_local_reserved_ports").mkdir()  # reading a directory fails
    with pytest.raises(ParseError, match="cannot read"):
        port_ranges(root)


def test_port_ranges_of_this_machine() -> None:
    sysctl = Path("/proc/sys/net/ipv4")
    low, high = map(int, (sysctl / "ip_local_port_range").read_text().split())
    ranges = portlib.port_ranges()
    assert ranges.ephemeral == range(low, high + 1)
    start_file = sysctl / "ip_unprivileged_port_start"
    if start_file.exists():
        assert ranges.unprivileged_start == int(start_file.read_text())
    reserved = (sysctl / "ip_local_reserved_ports").read_text().strip()
    assert ranges.reserved == parse_reserved_ports(reserved)


# -- is_port_free ------------------------------------------------------------------------


def _listener(
    host: str = "127.0.0.1", family: socket.AddressFamily = socket.AF_INET
) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen()
    return sock


def test_a_listening_port_is_not_free() -> None:
    with _listener() as sock:
        port = sock.getsockname()[1]
        assert is_port_free(port, "tcp", "127.0.0.1") is False
        assert is_port_free(port) is False  # all interfaces include 127.0.0.1
        assert is_port_free(port, "udp", "127.0.0.1") is True  # another protocol
    assert is_port_free(port, "tcp", "127.0.0.1") is True


def test_a_bound_socket_without_listen_holds_the_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        assert is_port_free(sock.getsockname()[1], Protocol.TCP, IPv4Address("127.0.0.1")) is False


def test_other_addresses_of_the_same_port() -> None:
    with _listener("127.0.0.2") as sock:
        port = sock.getsockname()[1]
        assert is_port_free(port, host="127.0.0.1") is True
        assert is_port_free(port, host="127.0.0.2") is False
        assert is_port_free(port) is False


@needs_ipv6
def test_ipv6_hosts_and_the_dual_stack_check() -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(("::1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert is_port_free(port, host="::1") is False
        assert is_port_free(port, host=IPv6Address("::1")) is False
        assert is_port_free(port, host="[::1]") is False
        assert is_port_free(port, host="127.0.0.1") is True
        assert is_port_free(port) is False  # a server on :: would collide with it


def test_udp_ports() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert is_port_free(port, "udp", "127.0.0.1") is False
        assert is_port_free(port, "UDP") is False
    assert is_port_free(port, "udp", "127.0.0.1") is True


def test_time_wait_leftovers_do_not_make_a_port_busy() -> None:
    """A server restarting on its port sets SO_REUSEADDR; TIME-WAIT must not count."""
    listener = _listener()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = listener.accept()
    conn.close()  # the server closes first, so the server side ends in TIME-WAIT
    assert client.recv(1) == b""
    client.close()
    listener.close()
    time.sleep(0.05)
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # the leftover is there: a bind without the option fails
    assert is_port_free(port, host="127.0.0.1") is True


@pytest.mark.parametrize("bad", [0, -1, 65536, True, "80", 80.5, None])
def test_is_port_free_bad_ports(bad: object) -> None:
    with pytest.raises(PortSpecError, match="port"):
        is_port_free(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["sctp", "", Protocol.RAW, 17])
def test_is_port_free_bad_protocols(bad: object) -> None:
    with pytest.raises(PortSpecError, match="protocol"):
        is_port_free(8000, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["localhost", "256.1.1.1", "", "127.0.0.1:80", 127, b"127.0.0.1"])
def test_is_port_free_bad_hosts(bad: object) -> None:
    with pytest.raises(TargetSpecError, match="host"):
        is_port_free(8000, host=bad)  # type: ignore[arg-type]


def test_an_address_of_another_machine() -> None:
    # bind() only: nothing is sent anywhere
    with pytest.raises(TargetSpecError, match=r"192\.0\.2\.1 is not an address of this machine"):
        is_port_free(8000, host="192.0.2.1")
    with pytest.raises(TargetSpecError, match="not an address"):
        find_free_port(host="192.0.2.1")


def _as_nobody(call: str) -> str:
    """Run ``call`` (an expression using ``ports``) in a forked child as user nobody."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop root, try, report, and leave without running pytest's cleanup
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                result = repr(eval(call, {"ports": ports}))
            except PortlibError as exc:
                result = f"{type(exc).__name__}: {exc}"
            os.write(write_end, result.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        out = pipe.read().decode()
    os.waitpid(pid, 0)
    return out


def test_privileged_ports_need_privilege() -> None:
    if port_ranges().unprivileged_start <= 80:
        pytest.skip("ip_unprivileged_port_start is 80 or lower here: port 80 is not privileged")
    if os.geteuid() != 0:
        with pytest.raises(PrivilegeError, match="CAP_NET_BIND_SERVICE"):
            is_port_free(80)
        return
    out = _as_nobody("ports.is_port_free(80)")
    assert out.startswith("PrivilegeError: binding 80/tcp needs root or CAP_NET_BIND_SERVICE"), out
    out = _as_nobody("ports.find_free_port(port_range='80-81')")
    assert out.startswith("NoFreePort:") and "2 need root" in out, out


# -- find_free_port ----------------------------------------------------------------------


def test_find_free_port_lets_the_kernel_choose() -> None:
    port = find_free_port()
    assert port in port_ranges().ephemeral
    assert is_port_free(port, host="127.0.0.1")
    udp = portlib.find_free_port("udp", "127.0.0.1")
    assert is_port_free(udp, "udp", "127.0.0.1")


def test_find_free_port_on_all_interfaces() -> None:
    port = find_free_port(host=None)
    assert is_port_free(port)


def _free_block(size: int, start: int = 20000) -> range:
    """``size`` consecutive ports free on 127.0.0.1 (for tests that search a range)."""
    for low in range(start, 30000, size):
        block = range(low, low + size)
        if all(is_port_free(p, host="127.0.0.1") for p in block):
            return block
    pytest.skip("no block of free ports between 20000 and 30000")


def test_find_free_port_in_a_range_skips_excluded_and_reserved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    block = _free_block(3)
    assert find_free_port(port_range=block, exclude=[block[0], block[1]]) == block[2]
    text = f"{block[0]}-{block[2]}"
    assert find_free_port(port_range=text, exclude={block[2], block[0]}) == block[1]
    assert find_free_port("udp", port_range=block, exclude=(block[0], block[2])) == block[1]

    kernel = port_ranges()
    policy = PortRanges(kernel.ephemeral, kernel.unprivileged_start, frozenset(block[:2]))
    monkeypatch.setattr(ports, "port_ranges", lambda procfs="/proc": policy)
    for _ in range(5):  # the search starts at random places; reserved ports are never picked
        assert find_free_port(port_range=block) == block[2]


def test_find_free_port_in_a_full_range() -> None:
    block = _free_block(3, start=21000)
    held = [reserve_port(port=block[2])]
    try:
        with pytest.raises(
            NoFreePort, match=r"no free tcp port in .* 1 in use, 2 reserved or excl"
        ):
            find_free_port(port_range=block, exclude=block[:2])
        held += [reserve_port(port=p) for p in block[:2]]
        with pytest.raises(NoFreePort, match=f"no free tcp port in {block[0]}-{block[2]}"):
            find_free_port(port_range=block)
    finally:
        for sock in held:
            sock.close()


def test_find_free_port_when_the_kernel_only_offers_excluded_ports() -> None:
    with pytest.raises(NoFreePort, match="excluded"):
        find_free_port(exclude=range(1, 65536))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"port_range": "10-5"}, "10 is above 5"),
        ({"port_range": "8000"}, "FIRST-LAST"),
        ({"port_range": "a-b"}, "FIRST-LAST"),
        ({"port_range": "0-10"}, "outside 1-65535"),
        ({"port_range": "65000-70000"}, "outside"),
        ({"port_range": range(5, 5)}, "empty"),
        ({"port_range": (8000, 8010)}, "range or a 'FIRST-LAST' string"),
        ({"exclude": 8080}, "collection of ports"),
        ({"exclude": [0]}, "out of range"),
        ({"exclude": ["80"]}, "integer"),
        ({"protocol": "icmp"}, "protocol"),
    ],
)
def test_find_free_port_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(PortSpecError, match=match):
        find_free_port(**kwargs)  # type: ignore[arg-type]


# -- reserve_port ------------------------------------------------------------------------


def test_a_reservation_keeps_everyone_else_out() -> None:
    with reserve_port() as sock:
        port = sock.getsockname()[1]
        assert sock.getsockname()[0] == "127.0.0.1"
        assert is_port_free(port, host="127.0.0.1") is False
        with pytest.raises(NoFreePort, match=f"port {port}/tcp is in use on 127.0.0.1"):
            reserve_port(port=port)
        # even a server setting SO_REUSEADDR cannot share it
        with socket.socket() as other:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with pytest.raises(OSError):
                other.bind(("127.0.0.1", port))


def test_serving_on_a_reserved_socket() -> None:
    with reserve_port() as sock:
        sock.listen()
        port = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            conn, _ = sock.accept()
            with conn:
                client.sendall(b"ping")
                assert conn.recv(4) == b"ping"


async def test_asyncio_server_on_a_reserved_socket() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(4))
        await writer.drain()
        writer.close()

    sock = reserve_port()
    port = sock.getsockname()[1]
    server = await asyncio.start_server(echo, sock=sock)
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"pong")
        assert await reader.readexactly(4) == b"pong"
        writer.close()
        await writer.wait_closed()


def test_reserve_a_udp_port_and_a_chosen_port() -> None:
    with reserve_port("udp") as sock:
        assert sock.type == socket.SOCK_DGRAM
        port = sock.getsockname()[1]
        assert is_port_free(port, "udp", "127.0.0.1") is False
    block = _free_block(1, start=22000)
    with reserve_port(port=block[0]) as sock:
        assert sock.getsockname()[1] == block[0]
    with reserve_port(port_range=block) as sock:
        assert sock.getsockname()[1] == block[0]


def test_reserve_on_all_interfaces() -> None:
    with reserve_port(host=None) as sock:
        port = sock.getsockname()[1]
        assert is_port_free(port, host="127.0.0.1") is False
        if sock.family == socket.AF_INET6:
            assert is_port_free(port, host="::1") is False


@needs_ipv6
def test_reserve_on_ipv6_loopback() -> None:
    with reserve_port(host="::1") as sock:
        assert sock.family == socket.AF_INET6
        assert is_port_free(sock.getsockname()[1], host="::1") is False


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"port": 65536}, PortSpecError, "out of range"),
        ({"port": -1}, PortSpecError, "out of range"),
        ({"port": "80"}, PortSpecError, "integer"),
        ({"port": 8000, "port_range": "8000-8001"}, PortSpecError, "either port= or port_range="),
        ({"protocol": Protocol.RAW}, PortSpecError, "protocol"),
        ({"host": "::1::"}, TargetSpecError, "bad host"),
        ({"host": "192.0.2.7"}, TargetSpecError, "not an address of this machine"),
    ],
)
def test_reserve_port_bad_arguments(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        reserve_port(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("port_range", [None, range(23000, 24000)], ids=["kernel", "range"])
def test_200_threads_reserving_at_once_get_200_ports(port_range: range | None) -> None:
    threads = 200
    start = threading.Barrier(threads)

    def reserve(_: int) -> socket.socket:
        start.wait()
        return reserve_port(port_range=port_range)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        socks = list(pool.map(reserve, range(threads)))
    try:
        taken = [s.getsockname()[1] for s in socks]
        assert len(set(taken)) == threads
        if port_range is not None:
            assert all(p in port_range for p in taken)
    finally:
        for sock in socks:
            sock.close()


@given(st.integers(-10, 70000), st.sampled_from(["tcp", "udp"]))
def test_is_port_free_answers_or_raises_a_library_error(port: int, protocol: str) -> None:
    try:
        answer = is_port_free(port, protocol, "127.0.0.1")
    except PortSpecError:
        assert not 1 <= port <= 65535
    except PrivilegeError:
        assert os.geteuid() != 0 and port < port_ranges().unprivileged_start
    else:
        assert isinstance(answer, bool)
