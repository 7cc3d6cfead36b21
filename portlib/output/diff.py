"""Compare two scans, as nmap's ``ndiff`` does: hosts and ports that appeared,
disappeared or changed state.

Either side may be portlib's or nmap's XML or portlib's JSON
(:func:`portlib.output.load` tells them apart). Ports are matched by (port, protocol)
within a host, hosts by address, folded ports (``extra_ports``) as well as listed
ones. A port counts as changed when its state
differs; a different reason alone (``conn-refused`` from a connect scan,
``reset`` from a SYN scan) is the same verdict and is not a change.

    >>> from portlib.output import load
    >>> d = diff_reports(load("monday.xml"), load("tuesday.json"))                # doctest: +SKIP
    >>> [(str(c.host), c.port, c.new_state) for c in d.ports_appeared()]         # doctest: +SKIP
    [('192.0.2.7', 8080, <PortState.OPEN: 'open'>)]
    >>> print(render_text(d))                                                       # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from enum import StrEnum

from portlib.folding import IGNORE_ABOVE
from portlib.model import (
    HostResult,
    HostState,
    IPAddress,
    PortResult,
    PortState,
    Protocol,
    Reason,
    ScanMethod,
    ScanReport,
)
from portlib.output.sharedtext import command_line, nmap_time
from portlib.textsafe import printable


class Change(StrEnum):
    """What happened to a host or port between the old scan and the new one."""

    APPEARED = "appeared"
    DISAPPEARED = "disappeared"
    CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class PortChange:
    """One port whose verdict differs; ``old_*`` is None when it appeared, ``new_*`` when
    it disappeared. ``service`` is the new scan's name for it, else the old one's."""

    host: IPAddress
    port: int
    protocol: Protocol
    change: Change
    old_state: PortState | None
    new_state: PortState | None
    old_reason: Reason | None
    new_reason: Reason | None
    service: str | None


@dataclass(frozen=True, slots=True)
class HostChange:
    """A host that differs. ``change`` is None when the host itself is the same (in both
    scans, same state) and only some of its ports differ."""

    address: IPAddress
    hostname: str | None
    change: Change | None
    old_state: HostState | None
    new_state: HostState | None
    ports: tuple[PortChange, ...]


@dataclass(frozen=True, slots=True)
class ScanSide:
    """Which scan one side of the comparison is: when it ran and how."""

    started: _dt.datetime
    method: ScanMethod
    args: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReportDiff:
    """Everything that differs between two scans, host by host (old scan's order first)."""

    old: ScanSide
    new: ScanSide
    hosts: tuple[HostChange, ...]

    @property
    def differs(self) -> bool:
        """Whether the two scans disagree about anything."""
        return bool(self.hosts)

    def hosts_appeared(self) -> tuple[HostChange, ...]:
        return self._hosts(Change.APPEARED)

    def hosts_disappeared(self) -> tuple[HostChange, ...]:
        return self._hosts(Change.DISAPPEARED)

    def hosts_changed(self) -> tuple[HostChange, ...]:
        """Hosts in both scans whose state differs (up in one, down in the other)."""
        return self._hosts(Change.CHANGED)

    def ports_appeared(self) -> tuple[PortChange, ...]:
        return self._ports(Change.APPEARED)

    def ports_disappeared(self) -> tuple[PortChange, ...]:
        return self._ports(Change.DISAPPEARED)

    def ports_changed(self) -> tuple[PortChange, ...]:
        return self._ports(Change.CHANGED)

    def _hosts(self, change: Change) -> tuple[HostChange, ...]:
        return tuple(h for h in self.hosts if h.change is change)

    def _ports(self, change: Change) -> tuple[PortChange, ...]:
        return tuple(p for h in self.hosts for p in h.ports if p.change is change)


def diff_reports(old: ScanReport, new: ScanReport) -> ReportDiff:
    """What changed from ``old`` to ``new``: a pure function of the two reports.

    >>> d = diff_reports(load("old.xml"), load("new.json"))                # doctest: +SKIP
    >>> d.differs, [c.port for c in d.ports_changed()]                      # doctest: +SKIP
    (True, [22])
    """
    old_hosts = {h.address: h for h in old.hosts}
    new_hosts = {h.address: h for h in new.hosts}
    order = list(old_hosts) + [a for a in new_hosts if a not in old_hosts]
    changes = []
    for address in order:
        change = _host_change(old_hosts.get(address), new_hosts.get(address))
        if change is not None:
            changes.append(change)
    return ReportDiff(_side(old), _side(new), tuple(changes))


def _side(report: ScanReport) -> ScanSide:
    return ScanSide(report.started, report.method, report.args)


def _host_change(old: HostResult | None, new: HostResult | None) -> HostChange | None:
    either = new if new is not None else old
    assert either is not None
    old_ports, new_ports = _comparable_ports(old, new)
    port_changes = []
    for key in old_ports.keys() | new_ports.keys():
        change = _port_change(either.address, old_ports.get(key), new_ports.get(key))
        if change is not None:
            port_changes.append(change)
    if old is None:
        host_change: Change | None = Change.APPEARED
    elif new is None:
        host_change = Change.DISAPPEARED
    elif old.state is not new.state:
        host_change = Change.CHANGED
    else:
        host_change = None
    if host_change is None and not port_changes:
        return None
    return HostChange(
        address=either.address,
        hostname=(new.hostname if new else None) or (old.hostname if old else None),
        change=host_change,
        old_state=old.state if old else None,
        new_state=new.state if new else None,
        ports=tuple(sorted(port_changes, key=lambda c: (c.protocol != Protocol.TCP, c.port))),
    )


def _comparable_ports(
    old: HostResult | None, new: HostResult | None
) -> tuple[dict[tuple[int, Protocol], PortResult], dict[tuple[int, Protocol], PortResult]]:
    """Each side's verdicts by (port, protocol). When both sides folded the same ports
    alike (the usual repeat scan) those are equal and apart from the listed ones, so
    only the listed ports are compared; otherwise every port, folded ones expanded."""
    same_folds = old is not None and new is not None and old.extra_ports == new.extra_ports

    def ports(host: HostResult | None) -> dict[tuple[int, Protocol], PortResult]:
        if host is None:
            return {}
        listed = host.ports if same_folds else host.all_ports()
        return {(p.port, p.protocol): p for p in listed}

    return ports(old), ports(new)


def _port_change(
    host: IPAddress, old: PortResult | None, new: PortResult | None
) -> PortChange | None:
    if old is not None and new is not None:
        if old.state is new.state:
            return None
        change = Change.CHANGED
    else:
        change = Change.APPEARED if old is None else Change.DISAPPEARED
    either = new if new is not None else old
    assert either is not None
    return PortChange(
        host=host,
        port=either.port,
        protocol=either.protocol,
        change=change,
        old_state=old.state if old else None,
        new_state=new.state if new else None,
        old_reason=old.reason if old else None,
        new_reason=new.reason if new else None,
        service=(new.service if new else None) or (old.service if old else None),
    )


# ---------------------------------------------------------------- text rendering


def render_text(diff: ReportDiff) -> str:
    """The diff as ndiff prints it: ``-`` old only, ``+`` new only, `` `` both.

    Ports that appeared or disappeared in a state more than 25 of them share on
    one host are folded into a ``Not shown`` line, as nmap folds them.
    """
    lines = [f"-{_title(diff.old)}", f"+{_title(diff.new)}"]
    for host in diff.hosts:
        lines.append("")
        lines.extend(_host_lines(host))
    return "\n".join(lines) + "\n"


def _title(side: ScanSide) -> str:
    line = command_line(side.args)
    tool = "Nmap" if line.startswith("nmap") else "portlib"
    return f"{tool} scan initiated {nmap_time(side.started)} as: {printable(line)}"


_HOST_SIGN: dict[Change | None, str] = {
    Change.APPEARED: "+",
    Change.DISAPPEARED: "-",
    Change.CHANGED: " ",
    None: " ",
}


def _host_lines(host: HostChange) -> list[str]:
    name = f"{printable(host.hostname)} ({host.address})" if host.hostname else str(host.address)
    sign = _HOST_SIGN[host.change]
    lines = [f"{sign}{name}:"]
    if host.change is Change.CHANGED:
        lines.append(f"-Host is {host.old_state}.")
        lines.append(f"+Host is {host.new_state}.")
    else:
        lines.append(f"{sign}Host is {host.new_state or host.old_state}.")
    if host.ports:
        lines.extend(_port_lines(host.ports))
    return lines


def _port_lines(changes: tuple[PortChange, ...]) -> list[str]:
    one_sided = [_one_sided(c) for c in changes if c.change is not Change.CHANGED]
    crowded = {
        key
        for key in set(one_sided)
        if key[1] is not PortState.OPEN and one_sided.count(key) > IGNORE_ABOVE
    }
    rows: list[tuple[str, str, str, str]] = []  # sign, port/proto, state, service
    folded: dict[tuple[str, PortState, Protocol], int] = {}
    for c in changes:
        where, service = f"{c.port}/{c.protocol}", printable(c.service or "")
        if c.change is Change.CHANGED:
            rows.append(("-", where, str(c.old_state), service))
            rows.append(("+", where, str(c.new_state), service))
            continue
        sign, state = _one_sided(c)
        if (sign, state) in crowded:
            folded[(sign, state, c.protocol)] = folded.get((sign, state, c.protocol), 0) + 1
        else:
            rows.append((sign, where, str(state), service))
    lines = [
        f"{sign}Not shown: {n} {state} {protocol} {'port' if n == 1 else 'ports'}"
        for (sign, state, protocol), n in folded.items()
    ]
    if rows:
        wide_port = max(len("PORT"), *(len(r[1]) for r in rows))
        wide_state = max(len("STATE"), *(len(r[2]) for r in rows))
        lines.append(f" {'PORT':<{wide_port}} {'STATE':<{wide_state}} SERVICE")
        for sign, where, verdict, service in rows:
            lines.append(f"{sign}{where:<{wide_port}} {verdict:<{wide_state}} {service}".rstrip())
    return lines


def _one_sided(c: PortChange) -> tuple[str, PortState]:
    if c.change is Change.APPEARED:
        assert c.new_state is not None
        return "+", c.new_state
    assert c.old_state is not None
    return "-", c.old_state
