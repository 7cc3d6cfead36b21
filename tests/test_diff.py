"""Report diffs (like ndiff), the JSON report reader, format detection and `portlib diff`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import socket
import subprocess
import sys
from ipaddress import ip_address
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portlib.cli import main
from portlib.errors import ReportFormatError
from portlib.model import HostResult, HostState, PortState, Protocol, Reason, ScanReport
from portlib.output import load, parse, render
from portlib.output.diff import Change, diff_reports, render_text
from portlib.output.jsonout import dumps
from portlib.output.nmapxml import to_nmap_xml
from tests.report_samples import LOCAL, LOCAL6, port, reports, sample_report, verdicts

OTHER = ip_address("127.0.0.2")


def changed_report() -> ScanReport:
    """The sample, a day later: 22 closed, 80 gone, 8080 new, ::1 up, 127.0.0.2 new."""
    old = sample_report()
    local, local6 = old.hosts
    ports = [p for p in local.ports if p.port != 80]
    ports = [
        dataclasses.replace(p, state=PortState.CLOSED, reason=Reason.CONN_REFUSED)
        if p.port == 22
        else p
        for p in ports
    ]
    ports.append(port(8080, PortState.OPEN, Reason.SYN_ACK, service="http-proxy"))
    newcomer = HostResult(
        OTHER,
        None,
        HostState.UP,
        Reason.USER_SET,
        (
            *(port(n, host=OTHER) for n in range(1, 40)),
            port(443, PortState.OPEN, Reason.SYN_ACK, host=OTHER, service="https"),
        ),
    )
    return dataclasses.replace(
        old,
        hosts=(
            dataclasses.replace(local, ports=tuple(ports)),
            dataclasses.replace(local6, state=HostState.UP, reason=Reason.LOCALHOST_RESPONSE),
            newcomer,
        ),
        args=("nmap", "-sT", "localhost"),
    )


# -------------------------------------------------------------------- the diff


def test_same_report_has_no_differences() -> None:
    diff = diff_reports(sample_report(), sample_report())
    assert not diff.differs and diff.hosts == ()


def test_every_kind_of_change_is_found() -> None:
    diff = diff_reports(sample_report(), changed_report())
    assert diff.differs
    assert [h.address for h in diff.hosts_appeared()] == [OTHER]
    assert diff.hosts_disappeared() == ()
    assert [(h.address, h.old_state, h.new_state) for h in diff.hosts_changed()] == [
        (LOCAL6, HostState.DOWN, HostState.UP)
    ]
    assert [(p.host, p.port, p.old_state, p.new_state) for p in diff.ports_changed()] == [
        (LOCAL, 22, PortState.OPEN, PortState.CLOSED)
    ]
    assert [(p.host, p.port) for p in diff.ports_disappeared()] == [(LOCAL, 80)]
    appeared = [(p.host, p.port, p.new_state) for p in diff.ports_appeared()]
    assert (LOCAL, 8080, PortState.OPEN) in appeared
    assert (OTHER, 443, PortState.OPEN) in appeared
    assert len(appeared) == 1 + 40  # 8080, and every port of the new host
    # the old-only side of a diff is the new-only side of the reverse diff
    back = diff_reports(changed_report(), sample_report())
    assert [h.address for h in back.hosts_disappeared()] == [OTHER]
    assert [(p.host, p.port) for p in back.ports_appeared()] == [(LOCAL, 80)]


def test_a_different_reason_alone_is_not_a_change() -> None:
    old = sample_report()
    host = old.hosts[0]
    resets = tuple(
        dataclasses.replace(p, reason=Reason.RESET) if p.reason is Reason.CONN_REFUSED else p
        for p in host.ports
    )
    new = dataclasses.replace(old, hosts=(dataclasses.replace(host, ports=resets), old.hosts[1]))
    assert not diff_reports(old, new).differs


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(reports(), reports())
def test_diff_accounts_for_every_verdict(old: ScanReport, new: ScanReport) -> None:
    """Applying the port changes to old's verdict states gives new's."""
    diff = diff_reports(old, new)
    states = {(p.host, p.port, p.protocol): p.state for h in old.hosts for p in h.ports}
    for change in (p for h in diff.hosts for p in h.ports):
        key = (change.host, change.port, change.protocol)
        assert states.get(key) == change.old_state
        if change.new_state is None:
            del states[key]
        else:
            states[key] = change.new_state
    assert states == {(p.host, p.port, p.protocol): p.state for h in new.hosts for p in h.ports}
    assert diff.differs == (diff_reports(new, old).differs)


def test_text_rendering_reads_like_ndiff() -> None:
    text = render_text(diff_reports(sample_report(), changed_report()))
    lines = text.splitlines()
    assert lines[0].startswith("-portlib scan initiated ")
    assert lines[0].endswith(" as: portlib scan -p 1-100,200-219,300-309,U:53 localhost")
    assert lines[1].startswith("+Nmap scan initiated ") and lines[1].endswith(
        " as: nmap -sT localhost"
    )
    body = "\n".join(lines[2:])
    assert body == (
        "\n"
        " localhost (127.0.0.1):\n"
        " Host is up.\n"
        " PORT     STATE  SERVICE\n"
        "-22/tcp   open   ssh\n"
        "+22/tcp   closed ssh\n"
        "-80/tcp   open   http\n"
        "+8080/tcp open   http-proxy\n"
        "\n"
        " ::1:\n"
        "-Host is down.\n"
        "+Host is up.\n"
        "\n"
        "+127.0.0.2:\n"
        "+Host is up.\n"
        "+Not shown: 39 closed tcp ports\n"
        " PORT    STATE SERVICE\n"
        "+443/tcp open  https"
    )


def test_diff_json_has_the_dataclass_fields() -> None:
    doc = json.loads(dumps(diff_reports(sample_report(), changed_report())))
    assert doc["old"]["method"] == "connect" and doc["new"]["args"][0] == "nmap"
    first = doc["hosts"][0]
    assert first["address"] == "127.0.0.1" and first["change"] is None
    assert first["ports"][0] == {
        "host": "127.0.0.1",
        "port": 22,
        "protocol": "tcp",
        "change": "changed",
        "old_state": "open",
        "new_state": "closed",
        "old_reason": "syn-ack",
        "new_reason": "conn-refused",
        "service": "ssh",
    }
    assert [h["change"] for h in doc["hosts"]] == [None, "changed", "appeared"]
    assert Change.APPEARED == "appeared"


# ---------------------------------------------------------------- JSON reader


def test_json_round_trip_is_exact() -> None:
    report = sample_report()
    assert parse(render(report, "json")) == report
    assert parse(dumps(report, indent=None)) == report


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(reports())
def test_json_round_trip_property(report: ScanReport) -> None:
    assert parse(render(report, "json")) == report


def test_json_reader_ignores_fields_it_does_not_know() -> None:
    doc = json.loads(render(sample_report(), "json"))
    doc["added_later"] = {"x": 1}
    doc["hosts"][0]["os_guess"] = "linux"
    assert parse(json.dumps(doc)) == sample_report()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("hosts"), "not a portlib scan report"),
        (lambda d: d.update(method="stealth"), "method: 'stealth' is not one of"),
        (lambda d: d["hosts"][0]["ports"][0].update(port=70000), "bad port number 70000"),
        (lambda d: d["hosts"][0]["ports"][0].update(state="ajar"), "'ajar' is not one of"),
        (lambda d: d["hosts"][0].update(address="localhost"), "bad address 'localhost'"),
        (lambda d: d["hosts"][0].update(address=1), "bad address 1"),
        (lambda d: d.update(started="yesterday"), "not an ISO 8601 time"),
        (lambda d: d.update(hosts={}), "hosts should be a JSON array"),
        (lambda d: d.update(elapsed="1s"), "elapsed: '1s' is not a number"),
    ],
)
def test_bad_json_is_a_report_format_error(mutate, message: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(render(sample_report(), "json"))
    mutate(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ReportFormatError) as caught:
        load(str(path))
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_load_report_tells_formats_apart(tmp_path: Path) -> None:
    xml, js, junk = tmp_path / "a.xml", tmp_path / "a.json", tmp_path / "a.txt"
    xml.write_text("\n  " + to_nmap_xml(sample_report()))
    js.write_text(render(sample_report(), "json"))
    junk.write_text("Host: 127.0.0.1 ()\tStatus: Up\n")
    assert verdicts(load(xml)) == verdicts(sample_report())
    assert load(str(js)) == sample_report()
    with pytest.raises(ReportFormatError, match="neither nmap/portlib XML nor portlib JSON"):
        load(junk)
    with pytest.raises(ReportFormatError, match="not valid JSON"):
        parse("{nope")


def test_xml_and_json_of_one_scan_do_not_differ() -> None:
    xml_side = parse(to_nmap_xml(sample_report()))
    json_side = parse(render(sample_report(), "json"))
    assert not diff_reports(xml_side, json_side).differs


# ------------------------------------------------------------------------- CLI


def write_pair(tmp_path: Path) -> tuple[Path, Path]:
    old, new = tmp_path / "old.xml", tmp_path / "new.json"
    old.write_text(to_nmap_xml(sample_report()))
    new.write_text(render(changed_report(), "json"))
    return old, new


def test_cli_exit_status_follows_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = write_pair(tmp_path)
    assert main(["diff", str(old), str(new)]) == 1
    out = capsys.readouterr().out
    assert "+8080/tcp open   http-proxy" in out and "+127.0.0.2:" in out
    assert main(["diff", str(old), str(old)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 2  # just the two scan titles


def test_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = write_pair(tmp_path)
    assert main(["diff", "--json", str(old), str(new)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [h["address"] for h in doc["hosts"]] == ["127.0.0.1", "::1", "127.0.0.2"]


def test_cli_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    old, _ = write_pair(tmp_path)
    junk = tmp_path / "junk.txt"
    junk.write_text("hello")
    for argv in (
        [str(old), str(tmp_path / "missing.xml")],
        [str(junk), str(old)],
        [str(old)],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "portlib", "diff", *argv], capture_output=True, text=True
        )
        assert done.returncode == 2, done
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "portlib", "diff", str(old), str(tmp_path / "missing.xml")],
        capture_output=True,
        text=True,
    )
    assert "missing.xml: cannot read the report" in done.stderr


# ------------------------------------------------------- portlib against nmap


@pytest.mark.live
def test_portlib_and_nmap_agree_on_loopback(tmp_path: Path) -> None:
    """A real connect scan by each, same ports: `portlib diff` finds no difference."""
    if shutil.which("nmap") is None:
        pytest.skip("nmap is not installed (apt-get install nmap)")
    import portlib

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        mine = listener.getsockname()[1]
        spec = f"1-100,{mine}"
        nmap_xml = tmp_path / "nmap.xml"
        subprocess.run(
            ["nmap", "-sT", "-p", spec, "-n", "-Pn", "-oX", str(nmap_xml), "127.0.0.1"],
            capture_output=True,
            check=True,
            timeout=120,
        )
        ours = portlib.scan("127.0.0.1", spec, discovery=False)
    ours_json = tmp_path / "portlib.json"
    ours_json.write_text(render(ours, "json"))
    diff = diff_reports(load(nmap_xml), load(ours_json))
    assert not diff.differs, render_text(diff)
    assert main(["diff", str(nmap_xml), str(ours_json)]) == 0
    assert mine in {p.port for p in ours.open_ports()}
    assert Protocol.TCP in ours.protocols


_json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_json_reads_or_raises_report_format_error(data: st.DataObject) -> None:
    """Random documents, and the real one with one field swapped for junk."""
    doc = json.loads(render(sample_report(), "json"))
    doc["hosts"] = doc["hosts"][:1]
    doc["hosts"][0]["ports"] = doc["hosts"][0]["ports"][:2]
    target = data.draw(st.sampled_from([doc, doc["hosts"][0], doc["hosts"][0]["ports"][0], None]))
    junk = data.draw(_json_values)
    if target is None:
        doc = junk
    else:
        target[data.draw(st.sampled_from(sorted(target)))] = junk
    with contextlib.suppress(ReportFormatError):
        parse(json.dumps(doc))
