"""merge_reports (portlib.merging) and ``portlib merge``: shard reports joined into one."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from ipaddress import ip_address
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import portlib
from portlib.cli import main
from portlib.errors import ScanError
from portlib.folding import fold_ports
from portlib.merging import PORT_STATE_PREFERENCE, merge_reports
from portlib.model import (
    DetectedService,
    DetectionMethod,
    HostResult,
    HostState,
    PortState,
    Protocol,
    Reason,
    ScanMethod,
    ScanReport,
)
from portlib.output import dump, load
from tests.report_samples import LOCAL, LOCAL6, STARTED, port, reports, sample_report

OTHER = ip_address("192.0.2.7")


def shard_of(report: ScanReport, index: int, count: int, **changes: object) -> ScanReport:
    """Every host of ``report``, with every ``count``-th port verdict from ``index``."""
    hosts = tuple(dataclasses.replace(h, ports=h.ports[index::count]) for h in report.hosts)
    return dataclasses.replace(report, hosts=hosts, **changes)


def folded(report: ScanReport) -> ScanReport:
    """``report`` with each host folded by nmap's rule, as a scan folds it."""
    hosts = []
    for host in report.hosts:
        listed, extra = fold_ports(host.all_ports())
        hosts.append(dataclasses.replace(host, ports=listed, extra_ports=extra))
    return dataclasses.replace(report, hosts=tuple(hosts))


def facts(host: HostResult) -> list[tuple[int, Protocol, PortState, Reason]]:
    """What a fold keeps of each verdict (it drops rtt and service)."""
    return [(p.port, p.protocol, p.state, p.reason) for p in host.all_ports()]


def test_the_shards_of_a_report_merge_back_into_it() -> None:
    whole = sample_report(probes_sent=131)
    parts = [shard_of(whole, i, 3, probes_sent=[44, 44, 43][i]) for i in range(3)]
    assert all(len(p.hosts[0].ports) < len(whole.hosts[0].ports) for p in parts)
    merged = merge_reports(*parts)
    assert merged == folded(whole)
    assert merge_reports(*parts, fold=False) == whole
    assert merge_reports(*reversed(parts)) == merged  # listed in order, not by arrival
    assert facts(merged.hosts[0]) == facts(whole.hosts[0])


def test_a_merged_host_is_folded_as_a_scanned_one() -> None:
    """Twenty closed ports in each of three shards are listed there; the 60 of the
    whole host are more than 25, so the merge folds them, into one range each reason."""
    host = sample_report().hosts[0]
    closed = [port(n) for n in range(1000, 1060)]
    whole = sample_report(hosts=(dataclasses.replace(host, ports=tuple(closed)),))
    parts = [shard_of(whole, i, 3) for i in range(3)]
    assert all(p.hosts[0].extra_ports == () for p in folded_parts(parts))
    merged = merge_reports(*parts).hosts[0]
    assert merged.ports == ()
    ((closed_fold,),) = [tuple(f.reasons) for f in merged.extra_ports]
    assert merged.extra_ports[0].state is PortState.CLOSED
    assert (closed_fold.reason, closed_fold.ranges) == (Reason.CONN_REFUSED, ((1000, 1059),))
    # Shards that folded already: their folds are expanded, joined and folded again.
    again = merge_reports(*folded_parts([shard_of(folded(whole), 0, 1)] * 2))
    assert again.hosts[0].extra_ports == merged.extra_ports


def folded_parts(parts: list[ScanReport]) -> list[ScanReport]:
    return [folded(p) for p in parts]


def test_tcp_lists_before_udp_on_the_same_port() -> None:
    tcp = port(53, PortState.OPEN, Reason.SYN_ACK)
    udp = port(53, PortState.OPEN_FILTERED, Reason.NO_RESPONSE, protocol=Protocol.UDP)
    below = port(52)
    make = lambda *ports: sample_report(  # noqa: E731
        hosts=(HostResult(LOCAL, None, HostState.UP, Reason.USER_SET, ports),)
    )
    merged = merge_reports(make(udp), make(tcp, below))
    assert merged.hosts[0].ports == (below, tcp, udp)


@pytest.mark.parametrize("first", list(PortState))
@pytest.mark.parametrize("second", list(PortState))
def test_a_verdict_in_two_reports_keeps_the_more_informative_state(
    first: PortState, second: PortState
) -> None:
    def one(state: PortState) -> ScanReport:
        verdict = port(22, state, Reason.NO_RESPONSE)
        up = HostResult(LOCAL, None, HostState.UP, Reason.USER_SET, (verdict,))
        return sample_report(hosts=(up,))

    kept = merge_reports(one(first), one(second)).hosts[0].ports
    assert len(kept) == 1
    winner = min(first, second, key=PORT_STATE_PREFERENCE.index)
    assert kept[0].state is winner
    assert PORT_STATE_PREFERENCE[:2] == (PortState.OPEN, PortState.CLOSED)


def test_between_equal_states_service_detection_wins_then_the_first_report() -> None:
    plain = port(22, PortState.OPEN, Reason.SYN_ACK, service="ssh")
    detected = dataclasses.replace(
        plain, detected=DetectedService("ssh", DetectionMethod.PROBED, 10, product="OpenSSH")
    )
    other_rtt = dataclasses.replace(plain, rtt=0.5)

    def holding(verdict: object) -> ScanReport:
        up = HostResult(LOCAL, None, HostState.UP, Reason.USER_SET, (verdict,))  # type: ignore[arg-type]
        return sample_report(hosts=(up,))

    assert merge_reports(holding(plain), holding(detected)).hosts[0].ports == (detected,)
    assert merge_reports(holding(detected), holding(plain)).hosts[0].ports == (detected,)
    assert merge_reports(holding(plain), holding(other_rtt)).hosts[0].ports == (plain,)


def test_host_states_up_beats_down_beats_unknown_with_the_up_reports_reason() -> None:
    up = HostResult(LOCAL, None, HostState.UP, Reason.ECHO_REPLY, (port(22),), latency=0.002)
    down = HostResult(LOCAL, "localhost", HostState.DOWN, Reason.NO_RESPONSE)
    unknown = HostResult(LOCAL, None, HostState.UNKNOWN, Reason.NO_RESPONSE)
    report = lambda host: sample_report(hosts=(host,))  # noqa: E731
    merged = merge_reports(report(unknown), report(down), report(up)).hosts[0]
    assert (merged.state, merged.reason, merged.latency) == (HostState.UP, Reason.ECHO_REPLY, 0.002)
    assert merged.hostname == "localhost"  # the first report that names it
    assert merged.ports == (port(22),)
    assert merge_reports(report(unknown), report(down)).hosts[0] == dataclasses.replace(
        down, hostname="localhost"
    )
    assert merge_reports(report(unknown)).hosts[0] == unknown


def test_hosts_keep_the_first_reports_order_then_the_new_ones() -> None:
    def hosts(*addresses: object) -> ScanReport:
        found = tuple(HostResult(a, None, HostState.DOWN, Reason.NO_RESPONSE) for a in addresses)  # type: ignore[arg-type]
        return sample_report(hosts=found)

    merged = merge_reports(hosts(LOCAL6, LOCAL), hosts(OTHER, LOCAL))
    assert [h.address for h in merged.hosts] == [LOCAL6, LOCAL, OTHER]


def test_counts_and_times_sum_and_span() -> None:
    later = STARTED + dt.timedelta(seconds=10)
    parts = [
        sample_report(probes_sent=5, elapsed=2.0),
        sample_report(probes_sent=7, started=later, elapsed=1.5, interrupted=True),
        sample_report(probes_sent=1, ports_per_host=20, elapsed=0.5),
    ]
    merged = merge_reports(*parts)
    assert merged.probes_sent == 13
    assert merged.started == STARTED and merged.elapsed == 11.5
    assert merged.interrupted
    assert merged.ports_per_host == 131  # the largest: a shard's XML counts fewer
    assert merged.args == parts[0].args


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"method": ScanMethod.SYN}, "method syn, not connect"),
        ({"protocols": (Protocol.TCP,)}, "protocols tcp, not tcp,udp"),
    ],
)
def test_reports_of_different_scans_are_refused(change: dict[str, object], words: str) -> None:
    with pytest.raises(ScanError, match=f"report 2 is of a different scan: {words}"):
        merge_reports(sample_report(), sample_report(**change))


def test_nothing_to_merge_is_refused() -> None:
    with pytest.raises(ScanError, match="nothing to merge"):
        merge_reports()
    with pytest.raises(ScanError, match="takes ScanReports, not str"):
        merge_reports(sample_report(), "part2.xml")  # type: ignore[arg-type]


def test_merge_reports_is_public() -> None:
    assert portlib.merge_reports is merge_reports
    assert "merge_reports" in portlib.__all__


@settings(max_examples=60, deadline=None)
@given(reports(), st.integers(1, 5), st.randoms(use_true_random=False))
def test_any_split_of_a_report_merges_back(whole: ScanReport, count: int, rng: object) -> None:
    """Each up host's verdicts dealt at random to ``count`` shards, each shard holding
    every host: the merge is the report again."""
    buckets: list[list[list[object]]] = [[[] for _ in whole.hosts] for _ in range(count)]
    for h, host in enumerate(whole.hosts):
        for verdict in host.ports:
            buckets[rng.randrange(count)][h].append(verdict)  # type: ignore[attr-defined]
    parts = [
        dataclasses.replace(
            whole,
            hosts=tuple(
                dataclasses.replace(host, ports=tuple(bucket[h]))  # type: ignore[arg-type]
                for h, host in enumerate(whole.hosts)
            ),
        )
        for bucket in buckets
    ]
    assert merge_reports(*parts) == folded(whole)


# --- portlib merge ---------------------------------------------------------------------


def test_the_cli_merges_xml_and_json_shards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unfolded XML shard and a folded JSON one: every verdict comes through, the
    merged host folded as a scan folds it, in each format."""
    whole = sample_report()
    first, second = tmp_path / "part1.xml", tmp_path / "part2.json"
    dump(shard_of(whole, 0, 2), str(first))
    dump(folded(shard_of(whole, 1, 2)), str(second))
    out = tmp_path / "whole.xml"
    assert main(["merge", str(first), str(second), "-oX", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)["hosts"][0]
    expected = folded(whole).hosts[0]
    assert [p["port"] for p in printed["ports"]] == [p.port for p in expected.ports]
    assert [(f["state"], sum(_count(g) for g in f["reasons"])) for f in printed["extra_ports"]] == [
        (f.state.value, f.count) for f in expected.extra_ports
    ]
    merged = load(str(out))
    assert [h.state for h in merged.hosts] == [HostState.UP, HostState.DOWN]
    assert facts(merged.hosts[0]) == facts(whole.hosts[0])
    assert merged.hosts[0].extra_ports == expected.extra_ports


def _count(group: dict[str, object]) -> int:
    return sum(last - first + 1 for first, last in group["ranges"])  # type: ignore[attr-defined]


def test_the_cli_lists_every_port_with_all_ports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = sample_report()
    part, out = tmp_path / "part.json", tmp_path / "all.xml"
    dump(whole, str(part))
    assert main(["merge", str(part), "--all-ports", "-oX", str(out)]) == 0
    table = capsys.readouterr().out
    assert "Not shown" not in table and "\n1/tcp " in table
    assert out.read_text().count("<port ") == len(whole.hosts[0].ports)


def test_the_cli_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    whole = sample_report()
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"part{i}.json")
        dump(shard_of(whole, i, 3), str(paths[-1]))
    assert main(["merge", *map(str, paths), "--open"]) == 0
    table = capsys.readouterr().out
    assert "22/tcp" in table and "80/tcp" in table and "1/tcp" not in table


@pytest.mark.parametrize(
    ("files", "words"),
    [
        (["missing.xml"], "missing.xml: cannot read the report"),
        (["garbage.xml"], "garbage.xml: neither nmap/portlib XML nor portlib JSON"),
        (["part.json", "syn.json"], "report 2 is of a different scan: method syn"),
    ],
)
def test_the_cli_says_what_is_wrong_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], files: list[str], words: str
) -> None:
    (tmp_path / "garbage.xml").write_text("not a report\n")
    dump(sample_report(), str(tmp_path / "part.json"))
    dump(sample_report(method=ScanMethod.SYN), str(tmp_path / "syn.json"))
    assert main(["merge", *(str(tmp_path / f) for f in files)]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and err.startswith("portlib: error: ")


def test_the_cli_streams_every_verdict_folded_ones_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = sample_report()
    paths = [tmp_path / "part1.json", tmp_path / "part2.json"]
    for i, path in enumerate(paths):
        dump(shard_of(whole, i, 2), str(path))
    assert main(["merge", *map(str, paths), "--jsonl"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["port"], d["protocol"], d["state"]) for d in lines] == [
        (p.port, p.protocol.value, p.state.value) for p in whole.hosts[0].all_ports()
    ]
