"""nmap's XML format (``-oX``): write a ScanReport as nmap does, whole or host by host.

The writer keeps to nmap's own DTD (``/usr/share/nmap/nmap.dtd``), so tools
that read nmap's XML (python-libnmap, Metasploit's importer, XSLT reports) read
portlib's. The DTD fixes ``scanner="nmap"``; ``profile_name="portlib"`` and the
leading comment say who really wrote the file. :mod:`portlib.output.xmlload`
reads it (and nmap's) back.

    >>> from portlib.output import parse
    >>> xml = to_nmap_xml(report)                                  # doctest: +SKIP
    >>> [p.port for p in parse(xml).open_ports()]                  # doctest: +SKIP
    [22, 8000]
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Iterator
from typing import IO, Any

from portlib.model import HostResult, PortResult, Protocol, ScanMethod, ScanReport
from portlib.output.portsummary import PortSummary, summary_of
from portlib.output.sharedtext import command_line, nmap_time, plural
from portlib.output.stream import ReportWriter, ScanHeader, render_whole
from portlib.output.xmlservice import service_element
from portlib.portspec import ranges_text

XML_OUTPUT_VERSION = "1.05"  # the xmloutputversion nmap 7.9x writes

# scaninfo type per TCP scan method; UDP scans are type "udp".
TCP_SCAN_TYPE: dict[ScanMethod, str] = {
    ScanMethod.CONNECT: "connect",
    ScanMethod.SYN: "syn",
    ScanMethod.ACK: "ack",
}

# Characters XML 1.0 cannot carry at all (hostnames and argv come from outside).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# What an attribute value escapes, "&" first so no other escape is escaped again.
_ATTRIBUTE_ESCAPES = (
    ("&", "&amp;"),
    (">", "&gt;"),
    ("<", "&lt;"),
    ("\n", "&#10;"),
    ("\r", "&#13;"),
    ("\t", "&#9;"),
)


# ---------------------------------------------------------------------- writer


def to_nmap_xml(report: ScanReport, *, all_ports: bool = False) -> str:
    """``report`` as nmap's XML: valid against nmap.dtd, readable by python-libnmap.

    Ports in a state shared by more than 25 of a host's ports (other than open)
    are folded into ``<extraports>``, as nmap does, with ``<extrareasons>``
    listing them (``ports="1-21,23-79"``), so nothing is lost for a reader;
    ``all_ports`` lists every port instead.

    >>> import portlib
    >>> xml = to_nmap_xml(portlib.scan("localhost", "22,80"))      # doctest: +SKIP
    >>> xml.splitlines()[3][:40]                                   # doctest: +SKIP
    '<nmaprun scanner="nmap" args="portlib sc'
    """
    return render_whole(
        report, lambda out, end: XmlWriter(out, all_ports=all_ports, clock=lambda: end)
    )


class XmlWriter(ReportWriter):
    """nmap's XML, host by host: ``end`` closes the document (``<runstats>``, with
    ``exit="error"`` after an interrupt), so the file is valid XML however the scan
    ended. ``clock`` gives each host's end time (the Unix time now, by default the
    scan's start)."""

    def __init__(
        self, out: IO[str], *, clock: Callable[[], float] | None = None, **options: Any
    ) -> None:
        super().__init__(out, **options)
        self.clock = clock

    def begin_text(self, header: ScanHeader) -> str:
        from portlib.version import __version__

        start = int(header.started.timestamp())
        startstr = nmap_time(header.started)
        args = command_line(header.args)
        out = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            "<!DOCTYPE nmaprun>",
            f"<!-- portlib {_comment(__version__)} scan initiated {startstr}"
            f" as: {_comment(args)} -->",
            f"<nmaprun scanner={_q('nmap')} args={_q(args)} start={_q(start)}"
            f" startstr={_q(startstr)} version={_q(__version__)} profile_name={_q('portlib')}"
            f" xmloutputversion={_q(XML_OUTPUT_VERSION)}>",
        ]
        out.extend(_scaninfo(header))
        out.append('<verbose level="0"/>')
        out.append('<debugging level="0"/>')
        return "\n".join(out) + "\n"

    def host_text(self, host: HostResult) -> str:
        assert self.header is not None
        start = int(self.header.started.timestamp())
        end = int(self.clock()) if self.clock is not None else start
        summary = summary_of(host, all_ports=self.all_ports)
        return _host(host, summary, start, max(start, end)) + "\n"

    def end_text(self, report: ScanReport) -> str:
        assert self.header is not None
        started = self.header.started
        end = int(started.timestamp() + report.elapsed)
        endstr = nmap_time(started + _dt.timedelta(seconds=report.elapsed))
        up, total = self.hosts_up, self.hosts_total
        summary = (
            f"portlib done at {endstr}; {plural(total, 'IP address', 'IP addresses')}"
            f" ({plural(up, 'host up', 'hosts up')}) scanned in {report.elapsed:.2f} seconds"
        )
        exit_attrs = (
            f" exit={_q('error')} errormsg={_q(INTERRUPTED_MESSAGE)}"
            if report.interrupted
            else f" exit={_q('success')}"
        )
        return (
            f"<runstats><finished time={_q(end)} timestr={_q(endstr)} summary={_q(summary)}"
            f" elapsed={_q(f'{report.elapsed:.2f}')}{exit_attrs}/>"
            f"<hosts up={_q(up)} down={_q(total - up)} total={_q(total)}/>\n"
            "</runstats>\n</nmaprun>\n"
        )


INTERRUPTED_MESSAGE = "interrupted before every port was decided"


def _scaninfo(header: ScanHeader) -> Iterator[str]:
    if header.method is ScanMethod.PING:
        return  # nmap -sn writes no scaninfo: no ports were scanned
    for protocol in header.protocols:
        if protocol is Protocol.UDP:
            scan_type = "udp"
        elif protocol is Protocol.TCP:
            scan_type = TCP_SCAN_TYPE.get(header.method, "connect")
        else:
            continue  # the DTD's scan types have nothing for raw sockets
        ranges = header.ports.get(protocol, ())
        numservices = sum(hi - lo + 1 for lo, hi in ranges) or header.ports_per_host
        yield (
            f"<scaninfo type={_q(scan_type)} protocol={_q(protocol.value)}"
            f" numservices={_q(numservices)} services={_q(ranges_text(ranges))}/>"
        )


def _host(host: HostResult, summary: PortSummary, start: int, end: int) -> str:
    addrtype = "ipv6" if host.address.version == 6 else "ipv4"
    timed_out = f" timedout={_q('true')}" if host.timed_out else ""
    lines = [
        f"<host starttime={_q(start)} endtime={_q(end)}{timed_out}>"
        f"<status state={_q(host.state.value)}"
        f" reason={_q(host.reason.value)} reason_ttl={_q(0)}/>",
        f"<address addr={_q(str(host.address))} addrtype={_q(addrtype)}/>",
        "<hostnames>",
    ]
    if host.hostname:
        lines.append(f"<hostname name={_q(host.hostname)} type={_q('user')}/>")
    lines.append("</hostnames>")
    if summary.shown or summary.folded:
        ports_xml = ["<ports>"]
        for folded in summary.folded:
            ports_xml.append(
                f"<extraports state={_q(folded.state.value)} count={_q(folded.count)}>\n"
            )
            for group in folded.reasons:
                ports_xml.append(
                    f"<extrareasons reason={_q(group.reason.value)} count={_q(group.count)}"
                    f" proto={_q(group.protocol.value)} ports={_q(ranges_text(group.ranges))}"
                    "/>\n"
                )
            ports_xml.append("</extraports>\n")
        for port in summary.shown:
            ports_xml.append(_port(port))
        ports_xml.append("</ports>")
        lines.append("".join(ports_xml))
    lines.append("</host>")
    return "\n".join(lines)


def _port(port: PortResult) -> str:
    service = ""
    if port.detected is not None:
        service = service_element(port.detected, _q)
    elif port.service:
        service = f"<service name={_q(port.service)} method={_q('table')} conf={_q(3)}/>"
    return (
        f"<port protocol={_q(port.protocol.value)} portid={_q(port.port)}>"
        f"<state state={_q(port.state.value)} reason={_q(port.reason.value)}"
        f" reason_ttl={_q(0)}/>{service}</port>\n"
    )


def _q(value: object) -> str:
    """An attribute value, quoted and escaped (newlines and tabs too), exactly as
    ``xml.sax.saxutils.quoteattr`` does; importing that module would cost ~20 ms of
    start-up (it pulls in urllib.request), more than writing a whole report."""
    text = _NOT_XML.sub("?", str(value))
    for char, entity in _ATTRIBUTE_ESCAPES:
        text = text.replace(char, entity)
    if '"' not in text:
        return f'"{text}"'
    if "'" not in text:
        return f"'{text}'"
    return '"' + text.replace('"', "&quot;") + '"'


def _comment(text: str) -> str:
    """Text safe inside <!-- -->, where "--" may not appear (nmap writes "-&#45;")."""
    text = _NOT_XML.sub("?", text)
    while "--" in text:
        text = text.replace("--", "-&#45;")
    return text
