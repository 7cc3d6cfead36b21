"""Writers that write a report host by host (issue 13): the whole-report renderers are
the same writers, an interrupted scan's files are closed properly (DTD-valid XML, a
JSON document), folded hosts read back equal in every format that round-trips, and
streamed files are opened safely."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from portlib.errors import OutputError
from portlib.folding import fold_ports
from portlib.model import (
    FoldedPorts,
    FoldedReason,
    HostState,
    PortState,
    Protocol,
    Reason,
    ScanReport,
)
from portlib.output import only_open, parse, render
from portlib.output.formats import FORMATS, writer_for
from portlib.output.safewrite import open_stream
from portlib.output.stream import ScanHeader
from portlib.portspec import merge_ranges
from tests.report_samples import reports, sample_report, verdicts
from tests.test_nmapxml import dtd_errors


def folded(report: ScanReport) -> ScanReport:
    """``report`` as a scan hands it out: each host folded by nmap's rule."""
    hosts = []
    for host in report.hosts:
        shown, extra = fold_ports(host.ports, host.extra_ports)
        hosts.append(dataclasses.replace(host, ports=shown, extra_ports=extra))
    return dataclasses.replace(report, hosts=tuple(hosts))


def streamed(report: ScanReport, fmt: str, **options: bool) -> tuple[str, list[str]]:
    """The text a writer leaves, and what the stream held after each step."""
    out = io.StringIO()
    end = report.started.timestamp() + report.elapsed
    writer = writer_for(fmt, out, clock=lambda: end, **options)  # type: ignore[arg-type]
    seen = []
    writer.begin(ScanHeader.from_report(report))
    seen.append(out.getvalue())
    for host in report.hosts:
        writer.host(host)
        seen.append(out.getvalue())
    writer.end(report)
    return out.getvalue(), seen


@pytest.mark.parametrize("fmt", FORMATS)
def test_render_is_the_writer_host_by_host(fmt: str) -> None:
    report = sample_report()
    text, seen = streamed(report, fmt)
    assert text == render(report, fmt)
    # each host's text is written (flushed) when it arrives, before the next one; the
    # table shows up hosts only, as nmap
    for (before, after), host in zip(itertools.pairwise(seen), report.hosts, strict=True):
        assert after.startswith(before)
        assert (after != before) == (fmt != "normal" or host.state is HostState.UP)


def test_an_interrupted_xml_is_closed_valid_nmap_xml(tmp_path: Path) -> None:
    report = folded(sample_report(interrupted=True))
    out = io.StringIO()
    writer = writer_for("xml", out)
    writer.begin(ScanHeader.from_report(report))
    writer.host(report.hosts[0])  # the second host never finished
    writer.end(report)
    xml = out.getvalue()
    assert dtd_errors(xml, tmp_path) == ""
    assert 'exit="error" errormsg="interrupted before every port was decided"' in xml
    assert '<hosts up="1" down="0" total="1"/>' in xml
    back = parse(xml)
    assert back.interrupted and len(back.hosts) == 1
    assert back.hosts[0].extra_ports == report.hosts[0].extra_ports
    libnmap = pytest.importorskip("libnmap.parser")
    parsed = libnmap.NmapParser.parse_fromstring(xml)
    assert parsed.hosts_total == 1 and len(parsed.hosts) == 1


def test_an_interrupted_json_is_one_loadable_document() -> None:
    report = folded(sample_report(interrupted=True))
    out = io.StringIO()
    writer = writer_for("json", out)
    writer.begin(ScanHeader.from_report(report))
    writer.end(report)  # interrupted before any host finished
    back = parse(out.getvalue())
    assert back.interrupted and back.hosts == ()
    json.loads(out.getvalue())


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_folded_reports_read_back_folded(fmt: str) -> None:
    report = folded(sample_report())
    assert report.hosts[0].extra_ports  # closed and filtered are folded
    back = parse(render(report, fmt))
    assert verdicts(back) == verdicts(report)
    for ours, theirs in zip(report.hosts, back.hosts, strict=True):
        assert theirs.extra_ports == ours.extra_ports
        assert [(p.port, p.protocol, p.state) for p in theirs.ports] == [
            (p.port, p.protocol, p.state) for p in ours.ports
        ]
    if fmt == "json":
        assert back == report  # JSON keeps everything


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(reports())
def test_folded_json_round_trips_exactly(report: ScanReport) -> None:
    assert parse(render(folded(report), "json")) == folded(report)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(reports())
def test_folding_first_changes_no_output(report: ScanReport) -> None:
    """A host folded by the scan prints as the same host listed in full."""
    for fmt in ("xml", "grepable", "normal"):
        assert render(folded(report), fmt) == render(report, fmt)
    assert verdicts(parse(render(folded(report), "xml"))) == verdicts(report)


def test_scaninfo_comes_from_the_scans_port_lists() -> None:
    """A folded host lists few ports; the header names every port the scan probes."""
    report = folded(sample_report())
    header = ScanHeader.from_scan(
        report.method, report.started, {Protocol.TCP: range(1, 1001), Protocol.UDP: [53]}
    )
    out = io.StringIO()
    writer = writer_for("xml", out)
    writer.begin(header)
    assert '<scaninfo type="connect" protocol="tcp" numservices="1000" services="1-1000"/>' in (
        out.getvalue()
    )
    assert '<scaninfo type="udp" protocol="udp" numservices="1" services="53"/>' in out.getvalue()
    # a whole report's header: every port some host has a verdict on, folded or listed
    assert ScanHeader.from_report(report).ports[Protocol.TCP] == ((1, 100), (200, 219), (300, 309))
    assert merge_ranges([(5, 9), (1, 3), (4, 4)]) == ((1, 9),)


def test_all_ports_lists_every_port_in_every_format() -> None:
    report = folded(sample_report())
    total = len(verdicts(report))
    xml = render(report, "xml", all_ports=True)
    assert "<extraports" not in xml and xml.count("<port ") == total - 0
    back = parse(render(report, "json", all_ports=True))
    assert back.hosts[0].extra_ports == () and len(back.hosts[0].ports) == total
    assert "Not shown" not in render(report, "normal", all_ports=True)
    assert "Ignored State" not in render(report, "grepable", all_ports=True)
    assert render(report, "grepable", all_ports=True).count("/closed/tcp/") == 98


def test_normal_and_grepable_count_folded_ports() -> None:
    report = folded(sample_report())
    normal = render(report, "normal")
    assert "Not shown: 98 closed tcp ports (conn-refused), 30 filtered tcp ports" in normal
    only_closed = dataclasses.replace(
        report.hosts[0],
        ports=(),
        extra_ports=(
            FoldedPorts(PortState.CLOSED, (FoldedReason(Reason.RESET, Protocol.TCP, ((1, 999),)),)),
        ),
    )
    one = dataclasses.replace(report, hosts=(only_closed,))
    assert "Ignored State: closed (999)" in render(one, "grepable")
    assert "All 999 scanned ports on localhost (127.0.0.1) are in ignored states." in render(
        one, "normal"
    )


def test_only_open_keeps_folded_open_filtered_ports() -> None:
    host = dataclasses.replace(
        folded(sample_report()).hosts[0],
        extra_ports=(
            FoldedPorts(
                PortState.OPEN_FILTERED,
                (FoldedReason(Reason.NO_RESPONSE, Protocol.UDP, ((100, 199),)),),
            ),
            FoldedPorts(PortState.CLOSED, (FoldedReason(Reason.RESET, Protocol.TCP, ((1, 9),)),)),
        ),
    )
    kept = only_open(dataclasses.replace(sample_report(), hosts=(host,))).hosts[0]
    assert [f.state for f in kept.extra_ports] == [PortState.OPEN_FILTERED]
    assert {p.state for p in kept.ports} <= {PortState.OPEN, PortState.OPEN_FILTERED}


def test_a_failing_stream_is_one_output_error() -> None:
    full = open("/dev/full", "w")  # noqa: SIM115 - its close fails too, as a full disk's would
    writer = writer_for("grepable", full, name="/dev/full")
    with pytest.raises(OutputError, match="cannot write /dev/full: No space left on device"):
        writer.begin(ScanHeader.from_report(sample_report()))
    with contextlib.suppress(OSError):
        full.close()


def test_open_stream_empties_or_appends_and_refuses_planted_links(tmp_path: Path) -> None:
    path = tmp_path / "scan.gnmap"
    path.write_text("old\n")
    with open_stream(str(path), append=True) as out:
        out.write("new\n")
    assert path.read_text() == "old\nnew\n"
    with open_stream(str(path)) as out:
        out.write("only\n")
    assert path.read_text() == "only\n"
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    target = tmp_path / "victim"
    target.write_text("keep")
    link = shared / "scan.xml"
    link.symlink_to(target)
    os.lchown(link, 65534, 65534)  # planted by another user
    with pytest.raises(OutputError, match="refusing to follow it"):
        open_stream(str(link))
    assert target.read_text() == "keep"
