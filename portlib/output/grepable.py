"""nmap's grepable format (``-oG``): one line per host and job, tab-separated fields,
written whole or host by host.

Layout, as nmap writes it::

    # portlib 0.1.0 scan initiated Fri Nov 27 23:10:46 2026 as: portlib scan localhost
    Host: 127.0.0.1 (localhost)\tStatus: Up
    Host: 127.0.0.1 (localhost)\tPorts: 22/open/tcp//ssh///\tIgnored State: closed (999)
    # portlib done at Fri Nov 27 23:10:47 2026 -- 1 IP address (1 host up) scanned in 0.05 seconds

Each port entry has seven slash-separated subfields: port, state, protocol,
owner, service, SunRPC info, version (portlib fills port, state, protocol and
service). ``Ignored State`` appears only when exactly one state was folded
away, as in nmap; with several, the folded ports are simply not listed.

    >>> print(to_grepable(report))                                  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import re

from portlib.model import HostResult, HostState, PortResult, ScanReport
from portlib.output.portsummary import summary_of
from portlib.output.sharedtext import command_line, nmap_time, plural
from portlib.output.stream import ReportWriter, ScanHeader, render_whole
from portlib.textsafe import printable

# Everything str.splitlines() breaks a line at, plus the tab between fields.
_LINE_BREAKS = "\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_BREAKS = re.compile(f"[{_LINE_BREAKS}]")
# In a port entry "/" and "," separate subfields and entries too.
_SEPARATORS = re.compile(f"[/,{_LINE_BREAKS}]")


def to_grepable(report: ScanReport, *, all_ports: bool = False) -> str:
    """``report`` in nmap's ``-oG`` format (one text, newline-terminated).

    >>> import portlib
    >>> text = to_grepable(portlib.scan("localhost", "22"))        # doctest: +SKIP
    >>> text.splitlines()[2]                                       # doctest: +SKIP
    'Host: 127.0.0.1 (localhost)\tPorts: 22/open/tcp//ssh///'
    """
    return render_whole(report, lambda out, _end: GrepableWriter(out, all_ports=all_ports))


class GrepableWriter(ReportWriter):
    """nmap's ``-oG``, a line or two per host as each finishes."""

    def begin_text(self, header: ScanHeader) -> str:
        from portlib.version import __version__

        started = nmap_time(header.started)
        line = command_line(header.args)
        return f"# portlib {__version__} scan initiated {started} as: {_clean(line)}\n"

    def host_text(self, host: HostResult) -> str:
        return "".join(f"{line}\n" for line in self._host_lines(host))

    def end_text(self, report: ScanReport) -> str:
        assert self.header is not None
        ended = nmap_time(self.header.started + _dt.timedelta(seconds=report.elapsed))
        total, up = self.hosts_total, self.hosts_up
        note = " (interrupted)" if report.interrupted else ""
        return (
            f"# portlib done at {ended} -- {plural(total, 'IP address', 'IP addresses')}"
            f" ({plural(up, 'host up', 'hosts up')}) scanned in {report.elapsed:.2f}"
            f" seconds{note}\n"
        )

    def _host_lines(self, host: HostResult) -> list[str]:
        prefix = f"Host: {host.address} ({_clean(host.hostname or '')})"
        lines = [f"{prefix}\tStatus: {host.state.value.capitalize()}"]
        if host.timed_out:
            lines.append(f"{prefix}\tStatus: Timeout")  # nmap's second line for such a host
        if host.state is not HostState.UP or not (host.ports or host.extra_ports):
            return lines
        summary = summary_of(host, all_ports=self.all_ports)
        line = f"{prefix}\tPorts: " + ", ".join(_port_entry(p) for p in summary.shown)
        if len(summary.folded) == 1:
            (folded,) = summary.folded
            line += f"\tIgnored State: {folded.state.value} ({folded.count})"
        lines.append(line)
        return lines


def _port_entry(port: PortResult) -> str:
    found = port.detected
    if found is None:
        service, version = service_field(port.service), ""
    else:  # -sV: nmap writes ssl|http and the VERSION text
        name = f"{found.tunnel}|{found.name}" if found.tunnel else found.name
        service, version = service_field(name), service_field(found.version_text())
    return f"{port.port}/{port.state.value}/{port.protocol.value}//{service}//{version}/"


def service_field(service: str | None) -> str:
    """A service name as a port entry's subfield: its separators become ``|``, and
    what a terminal would act on is written visibly."""
    return printable(_SEPARATORS.sub("|", service or ""))


def _clean(text: str) -> str:
    """Free text on one line: no newlines or tabs to break the line/field layout,
    nothing a terminal would act on."""
    return printable(_BREAKS.sub(" ", text))
