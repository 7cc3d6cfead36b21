"""Hostile and damaged report files: every one is refused with a ReportFormatError
(``portlib diff`` exit 2, one line), never a traceback, an exit 1 ("the reports
differ"), a hang or gigabytes of memory.

The CLI runs in a child with its address space capped, so a file that would
amplify into gigabytes fails the test instead of the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portlib.errors import ReportFormatError
from portlib.model import PortState
from portlib.output import load, parse, render
from portlib.output.nmapxml import to_nmap_xml
from portlib.output.reportchecks import MAX_ARGS_CHARS, MAX_REPORT_VERDICTS, PORTS_PER_PROTOCOL
from portlib.output.reportinput import ReportInput
from portlib.output.sharedtext import split_command_line
from tests.report_samples import sample_report, verdicts

REPO = Path(__file__).resolve().parent.parent
MEMORY_CAP = 1 << 30  # bytes of address space for the CLI child: a report needs far less


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def portlib_cli(
    *argv: str, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portlib", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=stdin,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=_capped,
    )


def assert_refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.xml"
    path.write_text(to_nmap_xml(sample_report()))
    return path


# ------------------------------------------------------------------ amplification

HOST = """<host><status state="up" reason="user-set"/><address addr="{address}" addrtype="ipv4"/>
<ports><extraports state="closed" count="{declared}">{reasons}</extraports></ports></host>"""
REASON = '<extrareasons reason="reset" count="{count}" proto="tcp" ports="{ports}"/>'


def nmaprun(*hosts: str) -> str:
    return (
        '<?xml version="1.0"?><nmaprun scanner="nmap" start="0">'
        '<scaninfo type="syn" protocol="tcp" numservices="65536" services="0-65535"/>'
        + "".join(hosts)
        + "</nmaprun>"
    )


def test_a_port_list_longer_than_its_declared_count_is_refused(tmp_path: Path, good: Path) -> None:
    # The 1.7 KB file: one range repeated 40 times, each claiming 65536 ports.
    reasons = REASON.format(count=65536, ports=",".join(["0-65535"] * 40))
    text = nmaprun(HOST.format(address="192.0.2.1", declared=65536, reasons=reasons))
    assert len(text) < 2000
    with pytest.raises(ReportFormatError, match="lists 2621440 ports, count= says 65536"):
        parse(text)
    path = tmp_path / "amplified.xml"
    path.write_text(text)
    assert_refused(portlib_cli("diff", str(good), str(path)), "count= says")


def test_no_host_lists_more_ports_than_a_protocol_has(tmp_path: Path, good: Path) -> None:
    # Each group agrees with its own count; together they are 40 full ranges.
    reasons = "".join(REASON.format(count=65536, ports="0-65535") for _ in range(40))
    text = nmaprun(HOST.format(address="192.0.2.1", declared=40 * 65536, reasons=reasons))
    with pytest.raises(ReportFormatError, match=f"more than {PORTS_PER_PROTOCOL} tcp ports"):
        parse(text)
    path = tmp_path / "amplified.xml"
    path.write_text(text)
    assert_refused(portlib_cli("diff", str(good), str(path)), "more than 65536 tcp ports")


def test_groups_may_not_hold_more_than_their_extraports_count() -> None:
    reasons = REASON.format(count=10, ports="1-10") + REASON.format(count=10, ports="11-20")
    with pytest.raises(ReportFormatError, match="more ports than the 15 of its <extraports>"):
        parse(nmaprun(HOST.format(address="192.0.2.1", declared=15, reasons=reasons)))


def test_a_port_listed_twice_is_refused() -> None:
    reasons = REASON.format(count=2, ports="5,5")
    with pytest.raises(ReportFormatError, match="lists port 5/tcp twice"):
        parse(nmaprun(HOST.format(address="192.0.2.1", declared=2, reasons=reasons)))


def test_an_honest_full_range_still_reads() -> None:
    reasons = REASON.format(count=65535, ports="1-65535")
    report = parse(nmaprun(HOST.format(address="192.0.2.1", declared=65535, reasons=reasons)))
    (host,) = report.hosts
    assert host.ports == () and host.state_counts() == {PortState.CLOSED: 65535}
    assert len(host.all_ports()) == 65535


def test_folded_ranges_stay_ranges_however_many_hosts() -> None:
    """A full-range host costs one range, so a report of many such hosts reads in
    little memory; the verdict budget counts ranges, not the ports they stand for."""
    reasons = REASON.format(count=65535, ports="1-65535")
    hosts = [
        HOST.format(address=f"198.18.{i >> 8}.{i & 255}", declared=65535, reasons=reasons)
        for i in range(300)  # 300 x 65535 = 19.7 M verdicts, above MAX_REPORT_VERDICTS
    ]
    report = parse(nmaprun(*hosts))
    assert len(report.hosts) == 300
    assert sum(h.state_counts()[PortState.CLOSED] for h in report.hosts) == 300 * 65535
    assert MAX_REPORT_VERDICTS < 300 * 65535


def test_a_port_both_listed_and_folded_is_refused() -> None:
    reasons = REASON.format(count=30, ports="1-30")
    host = HOST.format(address="192.0.2.1", declared=30, reasons=reasons).replace(
        "</extraports>",
        '</extraports><port protocol="tcp" portid="7"><state state="open" reason="syn-ack"/>'
        "</port>",
    )
    with pytest.raises(ReportFormatError, match="lists port 7/tcp twice"):
        parse(nmaprun(host))


def test_json_folded_ranges_are_checked() -> None:
    good = json.loads(render(sample_report(), "json"))
    for bad, message in (
        ([[5, 3]], "not a \\[first, last\\] port range"),
        ([[1, 70000]], "not a \\[first, last\\] port range"),
        ([[10, 20], [15, 30]], "out of order"),
        (["1-3"], "not a \\[first, last\\] port range"),
    ):
        doc = json.loads(json.dumps(good))
        doc["hosts"][0]["extra_ports"] = [
            {"state": "closed", "reasons": [{"reason": "reset", "protocol": "tcp", "ranges": bad}]}
        ]
        with pytest.raises(ReportFormatError, match=message):
            parse(json.dumps(doc))
    doc = json.loads(json.dumps(good))
    doc["hosts"][0]["extra_ports"] = [
        {"state": "closed", "reasons": [{"reason": "reset", "protocol": "tcp", "ranges": [[1, 5]]}]}
    ]
    with pytest.raises(ReportFormatError, match="lists port 1/tcp twice"):
        parse(json.dumps(doc))  # 1-5 are listed ports of the sample host already


# ----------------------------------------------------------------------- entities

ENTITY_REPORT = """<?xml version="1.0" encoding="UTF-16"?>
<!DOCTYPE nmaprun [<!ENTITY who "an entity's text">]>
<nmaprun scanner="nmap" start="0"><host><status state="up" reason="user-set"/>
<address addr="127.0.0.1" addrtype="ipv4"/><hostnames><hostname name="&who;" type="user"/>
</hostnames></host></nmaprun>"""


def test_entities_are_refused_in_utf16_too(tmp_path: Path, good: Path) -> None:
    path = tmp_path / "utf16.xml"
    path.write_bytes(ENTITY_REPORT.encode("utf-16"))
    with pytest.raises(ReportFormatError, match="DTD or XML entities"):
        load(path)
    assert_refused(portlib_cli("diff", str(good), str(path)), "entities")


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE nmaprun SYSTEM "file:///etc/passwd">',
        '<!DOCTYPE nmaprun PUBLIC "-//x//EN" "http://192.0.2.1/nmap.dtd">',
        "<!DOCTYPE nmaprun [<!NOTATION n SYSTEM 'x'>]>",
    ],
)
def test_external_dtds_and_subsets_are_refused(doctype: str) -> None:
    with pytest.raises(ReportFormatError, match="DTD"):
        parse(f'<?xml version="1.0"?>{doctype}<nmaprun start="0"/>')


def test_the_bare_doctype_nmap_writes_is_fine() -> None:
    assert parse('<?xml version="1.0"?>\n<!DOCTYPE nmaprun>\n<nmaprun start="0"/>').hosts == ()


# ------------------------------------------------------------------------ numbers

BAD_NUMBERS = [
    ('portid="22"', 'portid="²"', "bad port number '²'"),
    ('portid="22"', 'portid="' + "2" * 5000 + '"', "bad port number"),
    ("<ports>", '<times srtt="²" rttvar="1" to="1"/><ports>', "srtt is not a whole number"),
    (r'start="\d+"', 'start="99999999999999999"', "is not a time"),
    ('elapsed="1.25"', 'elapsed="inf"', "is not a duration"),
    ('elapsed="1.25"', 'elapsed="1e300"', "is not a duration"),
    ('numservices="', 'numservices="9' + "9" * 30, "not a whole number"),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD_NUMBERS)
def test_malformed_numbers_are_format_errors_and_exit_2(
    old: str, new: str, message: str, tmp_path: Path, good: Path
) -> None:
    text = to_nmap_xml(sample_report())
    text, replaced = re.subn(old if old.startswith("start") else re.escape(old), new, text, count=1)
    assert replaced == 1
    with pytest.raises(ReportFormatError, match=message):
        parse(text)
    path = tmp_path / "bad.xml"
    path.write_text(text)
    assert_refused(portlib_cli("diff", str(good), str(path)))  # never 1, "the reports differ"


# -------------------------------------------------------------------- size limits


def test_dev_zero_is_refused_at_once(good: Path) -> None:
    assert_refused(portlib_cli("diff", str(good), "/dev/zero"), "/dev/zero")


@contextlib.contextmanager
def fed(
    target: str | Path | int, chunk: bytes, *, first: bytes = b"", times: int = -1
) -> Iterator[None]:
    """A thread writes ``first``, then ``chunk`` (``times`` times, or until the block
    ends) into a FIFO or a pipe's descriptor, and gives up when the reader leaves."""
    stop = threading.Event()

    def feed() -> None:
        try:
            with open(target, "wb") as out:
                out.write(first)
                written = 0
                while not stop.is_set() and written != times:
                    out.write(chunk)
                    written += 1
        except OSError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        yield
    finally:
        stop.set()
        writer.join(timeout=30)


def test_a_fifo_that_never_ends_is_refused(tmp_path: Path, good: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with fed(fifo, b"\0" * 65536):  # zeros until the reader goes
        assert_refused(portlib_cli("diff", str(good), str(fifo)), str(fifo))


def test_a_pipe_is_read_no_further_than_the_limit() -> None:
    read_end, write_end = os.pipe()
    with fed(write_end, b" " * 4096, first=b"<nmaprun>"), os.fdopen(read_end, "rb") as stream:
        source = ReportInput.from_stream(stream, "<pipe>", limit=100_000)
        with pytest.raises(ReportFormatError, match="larger than the 100000 bytes"):
            source.read_all()


def test_stdin_from_dev_zero_is_refused(good: Path) -> None:
    with open("/dev/zero", "rb") as zeros:
        assert_refused(portlib_cli("diff", str(good), "/dev/stdin", stdin=zeros.fileno()))


@pytest.mark.parametrize("flag", ["-iL", "--excludefile"])
def test_target_files_from_dev_zero_and_fifos_are_refused(flag: str, tmp_path: Path) -> None:
    assert_refused(portlib_cli("scan", "-sL", "127.0.0.1", flag, "/dev/zero"), "NUL bytes")
    fifo = tmp_path / "targets"
    os.mkfifo(fifo)
    # 64 KiB at a time, 256 MiB in all: past the 64 MiB a target file may hold
    with fed(fifo, b"127.0.0.1 " * 6554, times=4096):
        assert_refused(portlib_cli("scan", "-sL", "127.0.0.1", flag, str(fifo)), "larger than")


# ----------------------------------------------------------------------- args=


@given(st.text(alphabet=" \t\n'\"\\ab-=x", max_size=30))
def test_command_lines_split_as_shlex_splits_them(text: str) -> None:
    try:
        expected = tuple(shlex.split(text))
    except ValueError:
        expected = tuple(text.split())  # unbalanced quotes: the words, as before
    assert split_command_line(text) == expected


def test_a_command_line_longer_than_any_argv_is_refused() -> None:
    text = to_nmap_xml(sample_report())
    huge = "portlib scan " + " ".join(["'a b'"] * (MAX_ARGS_CHARS // 5))
    with pytest.raises(ReportFormatError, match="longer than any Linux argv"):
        parse(text.replace('args="portlib scan', f'args="{huge}', 1))
    long_but_real = ["portlib", "scan", *(f"host {i}" for i in range(200_000))]
    report = parse(to_nmap_xml(sample_report(args=tuple(long_but_real))))
    assert report.args == tuple(long_but_real)


# ------------------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(interrupted="false"), "interrupted: 'false' is not true or false"),
        (lambda d: d.update(interrupted=0), "interrupted: 0 is not true or false"),
        (lambda d: d.update(ports_per_host=True), "ports_per_host: True is not a whole number"),
        (lambda d: d.update(probes_sent=-1), "probes_sent: -1 is not a whole number"),
        (
            lambda d: d["hosts"][0]["ports"][0].update(host="127.0.0.2"),
            "host 127.0.0.1 holds a verdict for another host, 127.0.0.2",
        ),
        (
            lambda d: d["hosts"][0]["ports"].append(d["hosts"][0]["ports"][0]),
            "lists port 1/tcp twice",
        ),
        (lambda d: d["hosts"][0].update(latency=-1.0), "latency: -1.0 is not a duration"),
        (lambda d: d.update(started="9999-12-31T23:59:59+00:00"), "are not a time"),
    ],
)
def test_json_types_are_checked_strictly(change, message: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(render(sample_report(), "json"))
    change(doc)
    with pytest.raises(ReportFormatError) as caught:
        parse(json.dumps(doc))
    assert message in str(caught.value)


@pytest.mark.parametrize("constant", ["Infinity", "-Infinity", "NaN"])
def test_json_infinity_and_nan_are_not_numbers(constant: str, tmp_path: Path, good: Path) -> None:
    text = render(sample_report(), "json").replace('"elapsed": 1.25', f'"elapsed": {constant}')
    assert constant in text
    with pytest.raises(ReportFormatError, match=f"{constant} is not a JSON number"):
        parse(text)
    path = tmp_path / "bad.json"
    path.write_text(text)
    assert_refused(portlib_cli("diff", str(good), str(path)))


def test_a_sound_json_report_still_round_trips() -> None:
    assert verdicts(parse(render(sample_report(), "json"))) == verdicts(sample_report())
