"""Probe templates cached on disk: exact bytes, and a warm cache never imports scapy.

scapy is the oracle: ``templates.scapy_template`` builds each probe with the real
source address and port, and the cached path must give the same bytes.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portlib.scanning.raw import templatecache, templates
from portlib.scanning.raw.templates import GENERIC_PAYLOAD, build_template, scapy_template
from portlib.scanning.raw.wire import Probe, layout_of

REPO = Path(__file__).resolve().parents[1]
SOURCES = {4: ip_address("192.0.2.1"), 6: ip_address("2001:db8::1")}
SCAPY_VERSION = metadata.version("scapy")


def table_payloads() -> list[bytes]:
    return [p for payloads in templates.udp_payloads().values() for p in payloads]


def cases() -> list[tuple[Probe, int, bytes]]:
    """(kind, IP version, payload) of every template a scan builds."""
    found = []
    for version in (4, 6):
        for kind in Probe:
            for payload in [GENERIC_PAYLOAD, *table_payloads()] if kind is Probe.UDP else [b""]:
                found.append((kind, version, payload))
    return found


def case_id(case: tuple[Probe, int, bytes]) -> str:
    kind, version, payload = case
    return f"{kind.name}{version}-{payload[:6].hex() or 'empty'}"


# --- the bytes --------------------------------------------------------------------------


@pytest.mark.parametrize("case", cases(), ids=case_id)
def test_every_template_is_what_scapy_builds_with_the_real_source_and_port(
    case: tuple[Probe, int, bytes],
) -> None:
    kind, version, payload = case
    for sport in (1, 45678, 65535):
        expected = scapy_template(kind, SOURCES[version], sport, payload)
        assert build_template(kind, SOURCES[version], sport, payload) == expected


@pytest.mark.parametrize("case", cases(), ids=case_id)
def test_a_checksum_that_sums_to_zero_is_written_as_scapy_writes_it(
    case: tuple[Probe, int, bytes],
) -> None:
    """TCP keeps a zero checksum; UDP writes 0xFFFF for it (RFC 768), scapy too."""
    kind, version, payload = case
    source = SOURCES[version]
    at_port_zero = build_template(kind, source, 0, payload)
    csum_at = layout_of(at_port_zero).l4_checksum
    # The source port adds itself to the one's complement sum: this port makes it 0xFFFF.
    sport = int.from_bytes(at_port_zero[csum_at : csum_at + 2], "big")
    built = build_template(kind, source, sport, payload)
    assert built[csum_at : csum_at + 2] == (b"\xff\xff" if kind is Probe.UDP else b"\0\0")
    assert built == scapy_template(kind, source, sport, payload)


@settings(max_examples=60, deadline=None)
@given(
    version=st.sampled_from([4, 6]),
    packed=st.binary(min_size=16, max_size=16),
    sport=st.integers(0, 65535),
    kind=st.sampled_from(list(Probe)),
    payload=st.one_of(st.sampled_from(table_payloads()), st.binary(max_size=40)),
)
def test_any_source_port_and_payload_matches_scapy(
    version: int, packed: bytes, sport: int, kind: Probe, payload: bytes
) -> None:
    source = IPv4Address(packed[:4]) if version == 4 else IPv6Address(packed)
    payload = payload if kind is Probe.UDP else b""
    assert build_template(kind, source, sport, payload) == scapy_template(
        kind, source, sport, payload
    )


# --- where the cache lives ------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"PORTLIB_CACHE_DIR": "/c", "XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/c"),
        ({"PORTLIB_CACHE_DIR": "", "XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/x/portlib"),
        ({"XDG_CACHE_HOME": "relative", "HOME": "/h"}, "/h/.cache/portlib"),
        ({"XDG_CACHE_HOME": "", "HOME": "/h"}, "/h/.cache/portlib"),
        ({"HOME": ""}, None),
        ({}, None),
    ],
)
def test_cache_dir_follows_the_environment(environ: dict[str, str], expected: str | None) -> None:
    assert templatecache.cache_dir(environ) == expected


def test_the_file_name_carries_the_format_and_the_scapy_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PORTLIB_CACHE_DIR", str(tmp_path))
    name = f"templates-v{templates.FORMAT}-scapy{SCAPY_VERSION}.json"
    assert templates.cache_path() == str(tmp_path / name)
    monkeypatch.setattr(templates, "_scapy_version_file", lambda: "9.9.9rc1")
    assert templates.cache_path() == str(
        tmp_path / f"templates-v{templates.FORMAT}-scapy9.9.9rc1.json"
    )
    monkeypatch.setattr(templates, "_scapy_version_file", lambda: "../../etc/x")
    assert templates.cache_path() is None  # not a version that can be part of a file name
    # No VERSION file: the installed distribution's metadata names the version.
    monkeypatch.setattr(templates, "_scapy_version_file", lambda: None)
    monkeypatch.setattr(metadata, "version", lambda _: "9.9.9rc2")
    assert templates.cache_path() == str(
        tmp_path / f"templates-v{templates.FORMAT}-scapy9.9.9rc2.json"
    )


# --- cold, warm, broken ---------------------------------------------------------------


@pytest.fixture
def cache_file(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "templates.json"


@pytest.fixture
def scapy_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts how often scapy builds the tables (still building them for real)."""
    calls: list[int] = []
    real = templates.build_tables

    def counted() -> templates.Tables:
        calls.append(1)
        return real()

    monkeypatch.setattr(templates, "build_tables", counted)
    return calls


def stored(path: Path) -> templates.Tables | None:
    return templates.decode(json.loads(path.read_text()), SCAPY_VERSION)


def test_a_cold_cache_is_built_once_and_written(cache_file: Path, scapy_builds: list[int]) -> None:
    old_umask = os.umask(0o022)
    try:
        tables = templates.load_tables(str(cache_file))
    finally:
        os.umask(old_umask)
    assert scapy_builds == [1]
    assert stat.S_IMODE(cache_file.stat().st_mode) == 0o644
    assert stat.S_IMODE(cache_file.parent.stat().st_mode) == 0o755
    assert os.listdir(cache_file.parent) == [cache_file.name]  # no temporary left behind
    assert stored(cache_file) == tables
    # Warm: the same tables, and scapy builds nothing.
    assert templates.load_tables(str(cache_file)) == tables
    assert scapy_builds == [1]


def good_document(tables: templates.Tables) -> dict[str, Any]:
    return templates.encode(tables, SCAPY_VERSION)


def patch_template(key: str, change: Callable[[bytearray], None]) -> Callable[[Any], None]:
    def mutate(doc: Any) -> None:
        blank = bytearray(bytes.fromhex(doc["templates"][key]))
        change(blank)
        doc["templates"][key] = blank.hex()

    return mutate


def set_byte(offset: int, value: int) -> Callable[[bytearray], None]:
    def change(blank: bytearray) -> None:
        blank[offset] = value

    return change


def flip_bit(offset: int) -> Callable[[bytearray], None]:
    def change(blank: bytearray) -> None:
        blank[offset] ^= 1

    return change


DOCUMENT_DAMAGE: dict[str, Callable[[Any], None]] = {
    "wrong format": lambda d: d.update(format=templates.FORMAT + 1),
    "other scapy": lambda d: d.update(scapy="0.0.1"),
    "other recipe": lambda d: d.update(recipe="0" * 16),
    "payloads not a table": lambda d: d.update(payloads=[]),
    "payload not a string": lambda d: d["payloads"]["53"].__setitem__(0, 53),
    "payload not hex": lambda d: d["payloads"]["53"].__setitem__(0, "zz"),
    "payload missing": lambda d: d["payloads"]["161"].pop(),
    "port missing": lambda d: d["payloads"].pop("123"),
    "template missing": lambda d: d["templates"].pop("ack6"),
    "extra template": lambda d: d["templates"].update(icmp4="00"),
    "odd hex": lambda d: d["templates"].update(syn4=d["templates"]["syn4"][:-1]),
    "template not a string": lambda d: d["templates"].update(udp6=None),
    "version nibble": patch_template("syn4", set_byte(0, 0x65)),
    "v4 options": patch_template("syn4", set_byte(0, 0x46)),
    "protocol number": patch_template("udp4", set_byte(9, 6)),
    "v6 next header": patch_template("ack6", set_byte(6, 17)),
    "v4 total length": patch_template("ack4", set_byte(3, 41)),
    "v6 payload length": patch_template("syn6", set_byte(5, 99)),
    "udp length": patch_template("udp6", set_byte(40 + 5, 9)),
    "tcp flags": patch_template("ack4", set_byte(20 + 13, 0x02)),
    "tcp data offset": patch_template("syn6", set_byte(40 + 12, 0x50)),
    "source not blank": patch_template("syn6", set_byte(8, 0x20)),
    "source port not blank": patch_template("udp4", set_byte(20 + 1, 7)),
    "v4 header checksum": patch_template("syn4", set_byte(11, 0)),
    "payload bit flipped": patch_template("udp4:53:0", flip_bit(-1)),
    "tcp window bit flipped": patch_template("ack4", flip_bit(20 + 15)),
    "ttl bit flipped": patch_template("syn6", flip_bit(7)),
    "truncated template": patch_template("udp6:5353:0", lambda b: b.__delitem__(slice(-2, None))),
    "template for another payload": lambda d: d["templates"].update(
        {"udp4:161:0": d["templates"]["udp4:161:1"]}
    ),
}


@pytest.fixture(scope="module")
def good_tables() -> templates.Tables:
    return templates.build_tables()


def test_the_good_document_decodes(good_tables: templates.Tables) -> None:
    assert templates.decode(good_document(good_tables), SCAPY_VERSION) == good_tables


@pytest.mark.parametrize("damage", DOCUMENT_DAMAGE.values(), ids=DOCUMENT_DAMAGE.keys())
def test_a_damaged_document_is_refused(
    damage: Callable[[Any], None], good_tables: templates.Tables
) -> None:
    document = json.loads(json.dumps(good_document(good_tables)))
    damage(document)
    assert templates.decode(document, SCAPY_VERSION) is None


BAD_FILES: dict[str, Callable[[str], str]] = {
    "empty": lambda text: "",
    "partial": lambda text: text[: len(text) // 2],
    "not json": lambda text: "\x00\xffgarbage",
    "a list": lambda text: "[1, 2, 3]",
    "damaged template": lambda text: text.replace('"syn4": "45', '"syn4": "65'),
}


@pytest.mark.parametrize("damage", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_bad_cache_file_is_rebuilt_and_replaced(
    damage: Callable[[str], str], cache_file: Path, scapy_builds: list[int]
) -> None:
    templates.load_tables(str(cache_file))
    cache_file.write_text(damage(cache_file.read_text()))
    assert stored_or_none(cache_file) is None
    rebuilt = templates.load_tables(str(cache_file))
    assert scapy_builds == [1, 1]
    assert stored(cache_file) == rebuilt


def stored_or_none(path: Path) -> templates.Tables | None:
    return templates.decode(templatecache.read_json(str(path)), SCAPY_VERSION)


def test_a_file_others_can_write_is_not_trusted(cache_file: Path, scapy_builds: list[int]) -> None:
    templates.load_tables(str(cache_file))
    cache_file.chmod(0o666)
    templates.load_tables(str(cache_file))
    assert scapy_builds == [1, 1]
    assert stat.S_IMODE(cache_file.stat().st_mode) == 0o644  # replaced by a trusted one
    assert templates.load_tables(str(cache_file)) is not None
    assert scapy_builds == [1, 1]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_file_owned_by_another_user_is_not_trusted(
    cache_file: Path, scapy_builds: list[int]
) -> None:
    templates.load_tables(str(cache_file))
    os.chown(cache_file, 12345, 12345)
    templates.load_tables(str(cache_file))
    assert scapy_builds == [1, 1]
    assert cache_file.stat().st_uid == os.geteuid()


@pytest.mark.skipif(os.geteuid() != 0, reason="what root does in a user's directory")
def test_root_writes_nothing_into_a_users_home(tmp_path: Path, scapy_builds: list[int]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, 12345, 12345)
    path = home / ".cache" / "portlib" / "templates.json"
    assert templates.load_tables(str(path)).blanks
    assert scapy_builds == [1]
    assert list(home.iterdir()) == []


def test_an_unwritable_cache_dir_still_gives_right_templates(
    tmp_path: Path, scapy_builds: list[int]
) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("not a directory")
    path = blocker / "portlib" / "templates.json"
    for _ in range(2):  # nothing cached, so scapy builds each time, without an error
        tables = templates.load_tables(str(path))
        for (kind, version, payload), blank in tables.blanks.items():
            assert blank == scapy_template(kind, templates._BLANK_SOURCE[version], 0, payload)
    assert scapy_builds == [1, 1]
    assert blocker.read_text() == "not a directory"


def test_no_cache_path_builds_without_touching_disk(scapy_builds: list[int]) -> None:
    assert templates.load_tables(None).payloads.keys() == templates.udp_payloads().keys()
    assert scapy_builds == [1]


# --- planted files and links --------------------------------------------------------------


READ_IN_CHILD = """
import sys
from portlib.scanning.raw import templatecache
print(templatecache.read_json(sys.argv[1]))
"""


def test_a_fifo_planted_as_the_cache_file_is_skipped_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "templates.json"
    os.mkfifo(fifo)
    # Opening a FIFO for reading blocks until a writer comes: the child would hang.
    done = subprocess.run(
        [sys.executable, "-c", READ_IN_CHILD, str(fifo)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "None\n"


def test_a_symlink_to_a_trusted_file_is_not_followed(
    cache_file: Path, scapy_builds: list[int], tmp_path: Path
) -> None:
    # A good cache document that the reader would trust (ours, mode 0644), reached
    # through a link: its bytes would be sent as probes if the link were followed.
    elsewhere = tmp_path / "elsewhere.json"
    templates.load_tables(str(elsewhere))
    assert templatecache.read_json(str(elsewhere)) is not None
    cache_file.parent.mkdir()
    cache_file.symlink_to(elsewhere)
    assert templatecache.read_json(str(cache_file)) is None
    assert templates.load_tables(str(cache_file)).blanks
    assert scapy_builds == [1, 1]  # built again: the link was not taken as the cache


def test_a_symlinked_directory_in_the_cache_path_is_not_written_through(
    tmp_path: Path, scapy_builds: list[int]
) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    path = tmp_path / "link" / "portlib" / "templates.json"
    assert templatecache.write_json(str(path), {"x": 1}) is False
    assert templates.load_tables(str(path)).blanks
    assert list(real.iterdir()) == []  # nothing was created where the link points
    assert scapy_builds == [1]


# --- scapy stays out of a warm process ------------------------------------------------

BUILD_ALL = """
import json, sys
from ipaddress import ip_address
from portlib.scanning.raw import templates
from portlib.scanning.raw.wire import Probe
built = []
for source in (ip_address("127.0.0.1"), ip_address("::1")):
    for kind in Probe:
        built.append(templates.build_template(kind, source, 40000).hex())
    for port, payloads in templates.udp_payloads().items():
        for payload in payloads:
            built.append(templates.build_template(Probe.UDP, source, 40000, payload).hex())
print(json.dumps({"scapy": "scapy" in sys.modules, "built": built}))
"""


def build_all_in_subprocess(environ: dict[str, str]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_CACHE_HOME")}
    env.pop("PORTLIB_CACHE_DIR", None)
    env |= {"PYTHONPATH": str(REPO)} | environ
    done = subprocess.run(
        [sys.executable, "-c", BUILD_ALL], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_warm_cache_never_imports_scapy(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    cold = build_all_in_subprocess({"PORTLIB_CACHE_DIR": str(directory)})
    assert cold["scapy"] is True
    name = f"templates-v{templates.FORMAT}-scapy{SCAPY_VERSION}.json"
    assert os.listdir(directory) == [name]
    warm = build_all_in_subprocess({"PORTLIB_CACHE_DIR": str(directory)})
    assert warm["scapy"] is False
    # The NTP payload carries scapy's build time: equal bytes mean they came from the file.
    assert warm["built"] == cold["built"]
    assert len(warm["built"]) == 2 * (3 + len(table_payloads()))


def test_without_home_there_is_no_cache_and_no_error(tmp_path: Path) -> None:
    result = build_all_in_subprocess({})
    assert result["scapy"] is True
    assert result["built"]


def test_scapy_version_comes_from_its_version_file_as_the_metadata_says() -> None:
    assert templates._scapy_version_file() == templates._scapy_version_metadata()


def test_scapy_version_file_is_found_the_way_import_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for entry, version in ((first, None), (second, "9.9.9")):
        (entry / "scapy").mkdir(parents=True)
        (entry / "scapy" / "__init__.py").write_text("")
        if version:
            (entry / "scapy" / "VERSION").write_text(version + "\n")
    monkeypatch.setattr(sys, "path", [str(second), str(first)])
    assert templates._scapy_version_file() == "9.9.9"
    # The first scapy on the path has no VERSION file: no guess from a later one.
    monkeypatch.setattr(sys, "path", [str(first), str(second)])
    assert templates._scapy_version_file() is None
