"""The fast report builder and renderers against frozen copies of the straightforward
ones (tests/speedpath_reference.py): same values, byte-identical text, on random
reports built to hit every path (ignored states, mixed reasons and protocols, shuffled
and duplicate ports, equal host addresses held in different objects) and on the
65535-port report whose speed they exist for."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from concurrent.futures import ThreadPoolExecutor
from ipaddress import ip_address

from hypothesis import given, settings
from hypothesis import strategies as st

from portlib import portspec
from portlib.model import (
    FoldedPorts,
    FoldedReason,
    HostResult,
    HostState,
    PortResult,
    PortState,
    Protocol,
    Reason,
    ScanMethod,
    ScanReport,
)
from portlib.output import columns, grepable, nmapxml, normal, portsummary
from portlib.portspec import ranges_of
from portlib.scanning.report import HostStatus
from tests import speedpath_reference as ref
from tests.report_samples import build_report

STARTED = dt.datetime(2026, 11, 28, 1, 2, 3, tzinfo=dt.UTC)
_ADDRESSES = ["127.0.0.1", "127.0.0.2", "::1", "192.0.2.7", "2001:db8::5"]
# A few reasons per state, so groups of one state and one reason are common.
_REASONS = [Reason.RESET, Reason.CONN_REFUSED, Reason.NO_RESPONSE, Reason.PORT_UNREACH]


@st.composite
def port_lists(draw: st.DrawFn, address: object) -> list[PortResult]:
    """One host's verdicts, in a random order: often one dominant state (so it is
    folded), ports in a narrow window (so there are runs), sometimes duplicates."""
    count = draw(st.integers(0, 120))
    window = draw(st.sampled_from([(0, 60), (0, 400), (65400, 65535), (0, 65535)]))
    dominant = draw(st.sampled_from(list(PortState)))
    share = draw(st.sampled_from([0.0, 0.5, 0.9, 1.0]))
    protocols = draw(
        st.sampled_from(
            [[Protocol.TCP], [Protocol.UDP], [Protocol.TCP, Protocol.UDP], list(Protocol)]
        )
    )
    unique = draw(st.booleans()) or draw(st.booleans())
    rng = random.Random(draw(st.integers(0, 2**32)))
    seen: set[tuple[int, Protocol]] = set()
    ports = []
    for _ in range(count):
        number = rng.randint(*window)
        protocol = rng.choice(protocols)
        if unique and (number, protocol) in seen:
            continue
        seen.add((number, protocol))
        state = dominant if rng.random() < share else rng.choice(list(PortState))
        reason = rng.choice(_REASONS) if rng.random() < 0.8 else rng.choice(list(Reason))
        rtt = rng.choice([None, 0.0, rng.random()])
        service = rng.choice([None, None, "ssh", "http", "x/y,z\tw", "<&\"'>"])
        ports.append(PortResult(address, number, protocol, state, reason, rtt, service))  # type: ignore[arg-type]
    return ports


@st.composite
def scans(draw: st.DrawFn) -> tuple[dict, list[PortResult]]:
    """build_report's arguments: targets, statuses and verdicts in arrival order."""
    texts = draw(st.lists(st.sampled_from(_ADDRESSES), unique=True, max_size=3))
    targets = []
    statuses = {}
    results: list[PortResult] = []
    for text in texts:
        address = ip_address(text)
        targets.append((address, draw(st.none() | st.sampled_from(["localhost", "a\tb"]))))
        state = draw(st.sampled_from([HostState.UP, HostState.UP, HostState.DOWN, None]))
        if state is not None:
            latency = draw(st.none() | st.floats(0, 1))
            statuses[address] = HostStatus(state, Reason.USER_SET, latency)
        # verdicts carry an equal address in another object half the time
        holder = ip_address(text) if draw(st.booleans()) else address
        results.extend(draw(port_lists(holder)))
    if draw(st.booleans()):  # verdicts for a host that is not a target are dropped
        results.extend(draw(port_lists(ip_address("127.0.0.9"))))
    random.Random(draw(st.integers(0, 2**32))).shuffle(results)
    present = {p.protocol for p in results}
    protocols = tuple(p for p in Protocol if p in present) or (Protocol.TCP,)
    if draw(st.booleans()):
        protocols = (Protocol.TCP, Protocol.UDP)
    kwargs = {
        "targets": targets,
        "statuses": statuses,
        "method": draw(st.sampled_from(list(ScanMethod))),
        "protocols": protocols,
        "started": STARTED,
        "elapsed": draw(st.floats(0, 100)),
        "ports_per_host": draw(st.integers(0, 2000)),
        "args": ("portlib", "scan", "-p-", "localhost"),
        "interrupted": draw(st.booleans()),
    }
    return kwargs, results


def build_both(kwargs: dict, results: list[PortResult]) -> tuple[ScanReport, ScanReport]:
    new = build_report(results=iter(results), **kwargs)
    old = ref.build_report(results=list(results), **kwargs)
    return new, old


def shuffled_ports(report: ScanReport, seed: int) -> ScanReport:
    """The same report with each host's ports in any order, as a caller may build one."""
    rng = random.Random(seed)
    hosts = []
    for host in report.hosts:
        ports = list(host.ports)
        rng.shuffle(ports)
        hosts.append(dataclasses.replace(host, ports=tuple(ports)))
    return dataclasses.replace(report, hosts=tuple(hosts))


def as_folded(summary: ref.PortSummary) -> portsummary.PortSummary:
    """The reference's summary in the model's terms (FoldedPorts, port ranges)."""
    folded = tuple(
        FoldedPorts(
            state.state,
            tuple(FoldedReason(g.reason, g.protocol, ranges_of(g.ports)) for g in state.reasons),
        )
        for state in summary.ignored
    )
    return portsummary.PortSummary(summary.shown, folded)


def has_duplicates(report: ScanReport) -> bool:
    """Whether a host names a (port, protocol) twice: folded ranges cannot hold that,
    and no reader accepts such a report."""
    return any(len({(p.port, p.protocol) for p in h.ports}) < len(h.ports) for h in report.hosts)


def assert_same_outputs(report: ScanReport) -> None:
    if has_duplicates(report):
        return
    for host in report.hosts:
        assert portsummary.summarise(host.ports) == as_folded(ref.summarise(host.ports))
        assert portsummary.summarise(host.ports, (), 3) == as_folded(ref.summarise(host.ports, 3))
        numbers = [p.port for p in host.ports]
        assert portspec.compress_ports(numbers) == ref.compress_ports(numbers)
    for open_only in (False, True):
        for reason in (False, True):
            assert normal.render_normal(
                report, open_only=open_only, reason=reason
            ) == ref.render_normal(report, open_only=open_only, reason=reason)
    assert grepable.to_grepable(report) == ref.to_grepable(report)
    assert nmapxml.to_nmap_xml(report) == ref.to_nmap_xml(report)


@settings(max_examples=250, deadline=None)
@given(scans(), st.integers(0, 2**32))
def test_random_reports_match_the_reference(scan: tuple, seed: int) -> None:
    kwargs, results = scan
    new, old = build_both(kwargs, results)
    assert new == old
    assert [h.ports for h in new.hosts] == [h.ports for h in old.hosts]
    assert_same_outputs(new)
    assert_same_outputs(shuffled_ports(new, seed))


@given(
    st.lists(st.integers(0, 65535), max_size=300)
    | st.lists(st.integers(0, 300), max_size=400)  # dense: runs of every length
    | st.lists(st.integers(0, 65535), max_size=30).map(  # a few long ranges
        lambda edges: [
            n for a, b in zip(edges[::2], edges[1::2], strict=False) for n in range(a, b)
        ]
    )
)
def test_compress_ports_matches_the_reference(numbers: list[int]) -> None:
    assert portspec.compress_ports(numbers) == ref.compress_ports(numbers)
    assert portspec.compress_ports(iter(numbers)) == ref.compress_ports(numbers)


def full_range_scan(protocols: tuple[Protocol, ...]) -> tuple[dict, list[PortResult]]:
    """Every port of 127.0.0.1, five open, in a scan's random order."""
    address = ip_address("127.0.0.1")
    opened = {22, 80, 443, 631, 8080}
    results = [
        PortResult(address, n, Protocol.TCP, PortState.OPEN, Reason.SYN_ACK, 1e-4, "http")
        if n in opened
        else PortResult(address, n, Protocol.TCP, PortState.CLOSED, Reason.RESET, 2e-4)
        for n in range(1, 65536)
    ]
    if Protocol.UDP in protocols:
        results += [
            PortResult(address, n, Protocol.UDP, PortState.CLOSED, Reason.PORT_UNREACH)
            for n in range(1, 2000)
        ]
        results.append(
            PortResult(address, 53, Protocol.UDP, PortState.OPEN_FILTERED, Reason.NO_RESPONSE)
        )
    random.Random(7).shuffle(results)
    kwargs = {
        "targets": [(address, "localhost")],
        "statuses": {address: HostStatus(HostState.UP, Reason.USER_SET)},
        "method": ScanMethod.SYN,
        "protocols": protocols,
        "started": STARTED,
        "elapsed": 0.5,
        "ports_per_host": 65535,
    }
    return kwargs, results


def test_full_range_report_matches_the_reference() -> None:
    for protocols in ((Protocol.TCP,), (Protocol.TCP, Protocol.UDP)):
        new, old = build_both(*full_range_scan(protocols))
        assert new == old
        assert_same_outputs(new)


def test_mixed_up_host_orders_still_match() -> None:
    """A HostResult built by hand with ports in descending order, TCP and UDP interleaved."""
    address = ip_address("192.0.2.7")
    ports = tuple(
        PortResult(address, n, protocol, PortState.FILTERED, Reason.NO_RESPONSE)
        for n in range(400, 0, -1)
        for protocol in (Protocol.UDP, Protocol.TCP)
    )
    host = HostResult(address, None, HostState.UP, Reason.USER_SET, ports)
    report = ScanReport((host,), ScanMethod.SYN, STARTED, 1.0, (Protocol.TCP, Protocol.UDP))
    assert_same_outputs(report)


def test_slot_sort_falls_back_on_duplicate_and_odd_port_numbers() -> None:
    """build_report's counting sort needs distinct numbers in 0..65535; anything else
    must come out exactly as sorted() orders it (stable: arrival order among equals)."""
    address = ip_address("127.0.0.1")
    rng = random.Random(3)
    reasons = list(Reason)
    for numbers in (
        [rng.randint(1, 1500) for _ in range(3000)],  # duplicates
        [*range(1, 2000), -1, 70000],  # outside 0..65535
    ):
        for protocols in ((Protocol.TCP,), (Protocol.TCP, Protocol.UDP)):
            results = [
                PortResult(
                    address,
                    n,
                    rng.choice([Protocol.TCP, Protocol.UDP, Protocol.RAW]),
                    PortState.CLOSED,
                    rng.choice(reasons),
                )
                for n in numbers
            ]
            kwargs = {
                "targets": [(address, None)],
                "statuses": {address: HostStatus(HostState.UP, Reason.USER_SET)},
                "method": ScanMethod.SYN,
                "protocols": protocols,
                "started": STARTED,
                "elapsed": 1.0,
            }
            new, old = build_both(kwargs, results)
            assert new.hosts[0].ports == old.hosts[0].ports
            assert_same_outputs(new)


def test_latency_is_the_port_order_minimum_even_with_nan_and_signed_zeros() -> None:
    """build_report reads RTTs in arrival order, where min() can differ only for NaN
    and for 0.0 against -0.0; then it must answer as the port-order minimum does."""
    address = ip_address("127.0.0.1")
    for rtts in ([float("nan"), 0.5, 0.2], [0.5, -0.0, 0.0, 0.3], [0.0, -0.0], [None, 0.4]):
        for seed in range(6):
            results = [
                PortResult(address, n, Protocol.TCP, PortState.OPEN, Reason.SYN_ACK, rtt)
                for n, rtt in enumerate(rtts, start=1)
            ]
            random.Random(seed).shuffle(results)
            kwargs = {
                "targets": [(address, None)],
                "statuses": {address: HostStatus(HostState.UP, Reason.USER_SET)},
                "method": ScanMethod.SYN,
                "protocols": (Protocol.TCP,),
                "started": STARTED,
                "elapsed": 1.0,
            }
            new, old = build_both(kwargs, results)
            assert repr(new.hosts[0].latency) == repr(old.hosts[0].latency)


def test_a_host_is_summarised_once_within_a_rendering_and_forgotten_after() -> None:
    kwargs, results = full_range_scan((Protocol.TCP,))
    report = build_report(results=results, **kwargs)
    host = report.hosts[0]
    with columns.sharing():
        first = portsummary.summary_of(host)
        assert portsummary.summary_of(host) is first  # the second output reuses it
        assert columns.columns_of(host) is columns.columns_of(host)
        with columns.sharing():  # a renderer's own block inside the caller's shares it
            assert portsummary.summary_of(host) is first
        assert columns.remembered_hosts() == [host]
    assert columns.remembered_hosts() == []  # nothing outlives the block
    assert portsummary.summary_of(host) is not portsummary.summary_of(host)
    # Every renderer opens a block of its own: a host is walked once per output.
    calls = []
    real = portsummary.summarise

    def counted(*args: object) -> object:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    portsummary.summarise = counted  # type: ignore[assignment]
    try:
        nmapxml.to_nmap_xml(report)
        assert calls == [1]
        with columns.sharing():
            grepable.to_grepable(report)
            nmapxml.to_nmap_xml(report)
        assert calls == [1, 1]
    finally:
        portsummary.summarise = real  # type: ignore[assignment]


def test_the_memo_keeps_only_the_most_recent_hosts() -> None:
    address = ip_address("192.0.2.1")
    ports = tuple(
        PortResult(address, n, Protocol.TCP, PortState.CLOSED, Reason.RESET)
        for n in range(columns.MEMO_FROM)
    )
    hosts = [
        HostResult(address, str(i), HostState.UP, Reason.USER_SET, ports)
        for i in range(columns.MEMO_HOSTS + 3)
    ]
    with columns.sharing():
        for host in hosts:
            columns.columns_of(host)
        assert columns.remembered_hosts() == hosts[-columns.MEMO_HOSTS :]
        small = HostResult(address, None, HostState.UP, Reason.USER_SET, ports[:3])
        columns.columns_of(small)
        assert small not in columns.remembered_hosts()  # small hosts are cheap to recompute


@given(st.one_of(st.text(), st.integers(), st.floats()))
def test_xml_attribute_quoting_matches_quoteattr(value: object) -> None:
    """nmapxml quotes attributes itself (saxutils costs ~20 ms to import); same bytes."""
    from xml.sax.saxutils import quoteattr

    text = nmapxml._NOT_XML.sub("?", str(value))
    expected = quoteattr(text, {"\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})
    assert nmapxml._q(value) == expected


def test_xml_attribute_quoting_picks_quotes_as_quoteattr() -> None:
    assert nmapxml._q('say "hi"') == "'say \"hi\"'"
    assert nmapxml._q('it\'s "x" & <y>\n') == '"it\'s &quot;x&quot; &amp; &lt;y&gt;&#10;"'


def test_outputs_from_many_threads_agree() -> None:
    """Threads rendering many large hosts at once (each with its own memo, evicting its
    own entries) still get the reference text."""
    address = ip_address("192.0.2.1")
    reports = []
    for i in range(columns.MEMO_HOSTS + 4):
        ports = tuple(
            PortResult(address, n, Protocol.TCP, PortState.CLOSED, Reason.RESET)
            if n % 97
            else PortResult(address, n, Protocol.TCP, PortState.OPEN, Reason.SYN_ACK)
            for n in range(i, i + 600)
        )
        host = HostResult(address, None, HostState.UP, Reason.USER_SET, ports)
        reports.append(ScanReport((host,), ScanMethod.SYN, STARTED, 1.0))
    expected = [ref.to_grepable(r) + ref.to_nmap_xml(r) for r in reports]

    def render_all() -> list[str]:
        return [grepable.to_grepable(r) + nmapxml.to_nmap_xml(r) for r in reports]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: render_all(), range(8)))
    assert all(result == expected for result in results)


def test_compress_ports_runs_of_every_length() -> None:
    """Runs are walked when short and leapt through (gallop, bisect) when long: every
    length around and past the switch must end exactly where it does."""
    for length in range(1, 300):
        numbers = [*range(10, 10 + length), 5000, *range(7000, 7000 + 2 * length + 1), 65535]
        assert portspec.compress_ports(numbers) == ref.compress_ports(numbers)
