"""Hand-made ScanReports for the output tests (XML, grepable, diff, CLI writers)."""

from __future__ import annotations

import datetime as dt
from ipaddress import ip_address

from hypothesis import strategies as st

from portlib.model import (
    HostResult,
    HostState,
    PortResult,
    PortState,
    Protocol,
    Reason,
    ScanMethod,
    ScanReport,
)

LOCAL = ip_address("127.0.0.1")
LOCAL6 = ip_address("::1")
STARTED = dt.datetime(2026, 11, 27, 23, 10, 46, tzinfo=dt.UTC)


def port(
    number: int,
    state: PortState = PortState.CLOSED,
    reason: Reason = Reason.CONN_REFUSED,
    *,
    host=LOCAL,
    protocol: Protocol = Protocol.TCP,
    service: str | None = None,
) -> PortResult:
    return PortResult(host, number, protocol, state, reason, 0.0001, service)


def sample_report(**changes: object) -> ScanReport:
    """127.0.0.1 with 22/ssh and 80/http open among 1-100 closed, 53/udp open|filtered,
    30 filtered ports, and ::1 down."""
    ports = [port(n) for n in range(1, 101) if n not in (22, 80)]
    ports += [
        port(22, PortState.OPEN, Reason.SYN_ACK, service="ssh"),
        port(80, PortState.OPEN, Reason.SYN_ACK, service="http"),
        port(53, PortState.OPEN_FILTERED, Reason.NO_RESPONSE, protocol=Protocol.UDP),
    ]
    ports += [port(n, PortState.FILTERED, Reason.NO_RESPONSE) for n in range(200, 220)]
    ports += [port(n, PortState.FILTERED, Reason.ADMIN_PROHIBITED) for n in range(300, 310)]
    ports.sort(key=lambda p: (p.port, p.protocol.value))
    fields: dict[str, object] = {
        "hosts": (
            HostResult(LOCAL, "localhost", HostState.UP, Reason.USER_SET, tuple(ports), 0.0001),
            HostResult(LOCAL6, None, HostState.DOWN, Reason.NO_RESPONSE),
        ),
        "method": ScanMethod.CONNECT,
        "started": STARTED,
        "elapsed": 1.25,
        "protocols": (Protocol.TCP, Protocol.UDP),
        "ports_per_host": 131,
        "args": ("portlib", "scan", "-p", "1-100,200-219,300-309,U:53", "localhost"),
    }
    fields.update(changes)
    return ScanReport(**fields)  # type: ignore[arg-type]


def verdicts(report: ScanReport) -> set[tuple[str, int, str, str, str]]:
    """What must survive any output format: (host, port, protocol, state, reason)."""
    return {
        (str(p.host), p.port, p.protocol.value, p.state.value, p.reason.value)
        for h in report.hosts
        for p in h.all_ports()
    }


_hosts = st.sampled_from(["127.0.0.1", "127.0.0.2", "::1", "192.0.2.7", "2001:db8::5"])


@st.composite
def reports(draw: st.DrawFn) -> ScanReport:
    """Random but well-formed reports: distinct hosts, distinct (port, protocol) per host."""
    addresses = draw(st.lists(_hosts, unique=True, min_size=0, max_size=3))
    hosts = []
    for text in addresses:
        address = ip_address(text)
        keys = draw(
            st.lists(
                st.tuples(st.integers(0, 65535), st.sampled_from([Protocol.TCP, Protocol.UDP])),
                unique=True,
                max_size=60,
            )
        )
        ports = tuple(
            PortResult(
                address,
                number,
                protocol,
                draw(st.sampled_from(list(PortState))),
                draw(st.sampled_from(list(Reason))),
                None,
                draw(st.none() | st.sampled_from(["ssh", "http", "domain", "x<&\"'y"])),
            )
            for number, protocol in sorted(keys, key=lambda k: (k[0], k[1].value))
        )
        state = draw(st.sampled_from(list(HostState)))
        hostname = draw(st.none() | st.text(min_size=1, max_size=12))
        hosts.append(
            HostResult(
                address,
                hostname,
                state,
                draw(st.sampled_from(list(Reason))),
                ports if state is HostState.UP else (),
            )
        )
    return ScanReport(
        hosts=tuple(hosts),
        method=draw(st.sampled_from([ScanMethod.CONNECT, ScanMethod.SYN, ScanMethod.ACK])),
        started=STARTED,
        elapsed=draw(st.floats(0, 1e5)),
        protocols=(Protocol.TCP, Protocol.UDP),
        args=tuple(draw(st.lists(st.text(max_size=8), max_size=4))),
        interrupted=draw(st.booleans()),
    )


def build_report(targets, statuses, results, *, method, protocols, started, elapsed,  # type: ignore[no-untyped-def]
                 ports_per_host=0, args=(), interrupted=False, probes_sent=0,
                 timed_out=frozenset()):  # fmt: skip
    """A ScanReport of hosts as the scan builds them (``build_hosts``, unfolded)."""
    from portlib.scanning.report import build_hosts

    hosts = build_hosts(targets, statuses, results, protocols=protocols, timed_out=timed_out)
    return ScanReport(tuple(hosts), method, started, elapsed, protocols, ports_per_host,
                      args, interrupted, probes_sent)  # fmt: skip
