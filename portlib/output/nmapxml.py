"""nmap's XML format (``-oX``): write a ScanReport as nmap does, and read nmap's back.

The writer keeps to nmap's own DTD (``/usr/share/nmap/nmap.dtd``), so tools
that read nmap's XML (python-libnmap, Metasploit's importer, XSLT reports) read
portlib's. The DTD fixes ``scanner="nmap"``; ``profile_name="portlib"`` and the
leading comment say who really wrote the file.

The reader takes nmap's or portlib's XML, a path or the text itself, with the
standard library's parser. Reports never declare entities, so a document that
does is refused before parsing (no entity-expansion tricks), and so is one
larger than :data:`MAX_REPORT_BYTES`.

    >>> from portlib.model import ScanReport
    >>> xml = report.to_nmap_xml()                                 # doctest: +SKIP
    >>> ScanReport.from_nmap_xml(xml).open_ports()                 # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import io
import os
import re
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from ipaddress import ip_address
from itertools import chain, compress, repeat
from operator import is_
from pathlib import Path

from portlib.errors import ReportFormatError
from portlib.model import (
    DetectedService,
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
from portlib.output.columns import columns_of
from portlib.output.nmaptext import command_line, nmap_time, plural
from portlib.output.portsummary import compress_ports, expand_ports, summary_of
from portlib.output.xmlservice import detected_service, service_element

MAX_REPORT_BYTES = 512 * 1024 * 1024
"""Refuse report files larger than this (a full 65535-port scan of a /24 is far below)."""

XML_OUTPUT_VERSION = "1.05"  # the xmloutputversion nmap 7.9x writes

# scaninfo type per TCP scan method; UDP scans are type "udp".
_TCP_SCAN_TYPE: dict[ScanMethod, str] = {
    ScanMethod.CONNECT: "connect",
    ScanMethod.SYN: "syn",
    ScanMethod.ACK: "ack",
}
_METHOD_OF_TYPE: dict[str, ScanMethod] = {v: k for k, v in _TCP_SCAN_TYPE.items()} | {
    "udp": ScanMethod.UDP
}
_HOST_STATE: dict[str, HostState] = {
    "up": HostState.UP,
    "down": HostState.DOWN,
    "unknown": HostState.UNKNOWN,
    "skipped": HostState.UNKNOWN,  # nmap's "skipped" hosts were never probed
}
_REASONS: dict[str, Reason] = {r.value: r for r in Reason}
_STATES: dict[str, PortState] = {s.value: s for s in PortState}
_PROTOCOLS: dict[str, Protocol] = {"tcp": Protocol.TCP, "udp": Protocol.UDP}

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


def to_nmap_xml(report: ScanReport) -> str:
    """``report`` as nmap's XML: valid against nmap.dtd, readable by python-libnmap.

    Ports in a state shared by more than 25 of a host's ports (other than open)
    are folded into ``<extraports>``, as nmap does, with ``<extrareasons>``
    listing them (``ports="1-21,23-79"``), so nothing is lost for a reader.

    >>> import portlib
    >>> xml = portlib.scan("localhost", "22,80").to_nmap_xml()     # doctest: +SKIP
    >>> xml.splitlines()[3][:40]                                   # doctest: +SKIP
    '<nmaprun scanner="nmap" args="portlib sc'
    """
    from portlib import __version__

    start = int(report.started.timestamp())
    end = int(report.started.timestamp() + report.elapsed)
    startstr = nmap_time(report.started)
    endstr = nmap_time(report.started + _dt.timedelta(seconds=report.elapsed))
    args = command_line(report.args)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<!DOCTYPE nmaprun>",
        f"<!-- portlib {_comment(__version__)} scan initiated {startstr} as: {_comment(args)} -->",
        f"<nmaprun scanner={_q('nmap')} args={_q(args)} start={_q(start)}"
        f" startstr={_q(startstr)} version={_q(__version__)} profile_name={_q('portlib')}"
        f" xmloutputversion={_q(XML_OUTPUT_VERSION)}>",
    ]
    out.extend(_scaninfo(report))
    out.append('<verbose level="0"/>')
    out.append('<debugging level="0"/>')
    for host in report.hosts:
        out.append(_host(host, start, end))
    up = sum(1 for h in report.hosts if h.state is HostState.UP)
    total = len(report.hosts)
    summary = (
        f"portlib done at {endstr}; {plural(total, 'IP address', 'IP addresses')}"
        f" ({plural(up, 'host up', 'hosts up')}) scanned in {report.elapsed:.2f} seconds"
    )
    exit_attrs = (
        f" exit={_q('error')} errormsg={_q('interrupted before every port was decided')}"
        if report.interrupted
        else f" exit={_q('success')}"
    )
    out.append(
        f"<runstats><finished time={_q(end)} timestr={_q(endstr)} summary={_q(summary)}"
        f" elapsed={_q(f'{report.elapsed:.2f}')}{exit_attrs}/>"
        f"<hosts up={_q(up)} down={_q(total - up)} total={_q(total)}/>"
    )
    out.append("</runstats>")
    out.append("</nmaprun>")
    return "\n".join(out) + "\n"


def _scaninfo(report: ScanReport) -> Iterator[str]:
    if report.method is ScanMethod.PING:
        return  # nmap -sn writes no scaninfo: no ports were scanned
    for protocol in report.protocols:
        if protocol is Protocol.UDP:
            scan_type = "udp"
        elif protocol is Protocol.TCP:
            scan_type = _TCP_SCAN_TYPE.get(report.method, "connect")
        else:
            continue  # the DTD's scan types have nothing for raw sockets
        # The report keeps verdicts, not the port list: every port any host got a
        # verdict on was scanned.
        ports = set(chain.from_iterable(_numbers(h, protocol) for h in report.hosts))
        numservices = len(ports) or report.ports_per_host
        yield (
            f"<scaninfo type={_q(scan_type)} protocol={_q(protocol.value)}"
            f" numservices={_q(numservices)} services={_q(compress_ports(ports))}/>"
        )


def _numbers(host: HostResult, protocol: Protocol) -> Iterable[int]:
    """The port numbers of ``host``'s verdicts over ``protocol``."""
    columns = columns_of(host)
    if columns.one_protocol():
        return columns.numbers if columns.protocols[:1] == (protocol,) else ()
    return compress(columns.numbers, map(is_, columns.protocols, repeat(protocol)))


def _host(host: HostResult, start: int, end: int) -> str:
    addrtype = "ipv6" if host.address.version == 6 else "ipv4"
    lines = [
        f"<host starttime={_q(start)} endtime={_q(end)}><status state={_q(host.state.value)}"
        f" reason={_q(host.reason.value)} reason_ttl={_q(0)}/>",
        f"<address addr={_q(str(host.address))} addrtype={_q(addrtype)}/>",
        "<hostnames>",
    ]
    if host.hostname:
        lines.append(f"<hostname name={_q(host.hostname)} type={_q('user')}/>")
    lines.append("</hostnames>")
    if host.ports:
        summary = summary_of(host)
        ports_xml = ["<ports>"]
        for ignored in summary.ignored:
            ports_xml.append(
                f"<extraports state={_q(ignored.state.value)} count={_q(ignored.count)}>\n"
            )
            for group in ignored.reasons:
                ports_xml.append(
                    f"<extrareasons reason={_q(group.reason.value)} count={_q(len(group.ports))}"
                    f" proto={_q(group.protocol.value)} ports={_q(compress_ports(group.ports))}"
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


# ---------------------------------------------------------------------- reader


def from_nmap_xml(source: str | os.PathLike[str]) -> ScanReport:
    """Read nmap's or portlib's XML, given as a path or as the XML text, into a report.

    Ports nmap folded into ``<extraports>`` come back one by one when nmap listed
    them (``extrareasons ports=``, nmap 7.92 and later); older files only say
    how many there were, so those ports are missing from the report. Reasons
    portlib has no name for become ``unknown-response``. nmap's SCTP and
    IP-protocol scans, and TCP scan types other than connect/SYN/ACK, are refused.

    Raises ReportFormatError, naming the file, for anything that is not such a report.

    >>> report = from_nmap_xml("scan.xml")                         # doctest: +SKIP
    >>> [(p.port, p.state.value) for p in report.open_ports()]     # doctest: +SKIP
    [(22, 'open')]
    """
    return report_from_xml_bytes(*read_report_source(source))


def report_from_xml_bytes(data: bytes, name: str) -> ScanReport:
    """A ScanReport from the bytes of nmap's XML; ``name`` is for error messages."""
    if b"<!ENTITY" in data:
        raise ReportFormatError(
            "declares XML entities, which nmap reports never do; refusing to expand them",
            source=name,
        )
    reader = _Reader(name)
    root: ET.Element | None = None
    hosts: list[HostResult] = []
    depth = 0
    # Leading blank lines (a pasted or triple-quoted report) would make the XML
    # declaration illegal; they carry nothing, so drop them.
    stream = io.BytesIO(data.lstrip(b" \t\r\n"))
    try:
        # Incrementally: each <host> becomes a HostResult and leaves the tree at once,
        # so memory follows the verdicts, not the size of the XML.
        for event, element in ET.iterparse(stream, events=("start", "end")):
            if event == "start":
                depth += 1
                if root is None:
                    root = element
                    if root.tag != "nmaprun":
                        raise reader.fail(
                            f"not an nmap XML report: the root element is <{root.tag}>,"
                            " not <nmaprun>"
                        )
            else:
                depth -= 1
                if depth == 1 and element.tag == "host" and root is not None:
                    hosts.append(reader.host(element))
                    root.remove(element)
    except ET.ParseError as exc:
        line = exc.position[0] if exc.position else None
        raise ReportFormatError(f"not well-formed XML: {exc}", source=name, line=line) from None
    assert root is not None  # iterparse raises ParseError on a document without elements
    return reader.report(root, hosts)


def read_report_source(source: str | os.PathLike[str]) -> tuple[bytes, str]:
    """The bytes of a report given as a path or as its text, and a name for messages.

    Text is recognised by its first character (``<`` or ``{``); anything else is a path.
    """
    if isinstance(source, str) and source.lstrip()[:1] in {"<", "{", "["}:
        data = source.encode("utf-8")
        if len(data) > MAX_REPORT_BYTES:
            raise ReportFormatError(
                f"report text is larger than {MAX_REPORT_BYTES} bytes", source="<report text>"
            )
        return data, "<report text>"
    path = Path(source)
    name = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_REPORT_BYTES:
            raise ReportFormatError(
                f"{size} bytes is larger than the {MAX_REPORT_BYTES} bytes portlib reads",
                source=name,
            )
        return path.read_bytes(), name
    except OSError as exc:
        raise ReportFormatError(f"cannot read the report: {exc.strerror}", source=name) from None


class _Reader:
    """Element-to-dataclass conversion, with the file name for every error."""

    def __init__(self, name: str) -> None:
        self.name = name

    def fail(self, message: str) -> ReportFormatError:
        return ReportFormatError(message, source=self.name)

    def report(self, root: ET.Element, hosts: list[HostResult]) -> ScanReport:
        infos = root.findall("scaninfo")
        protocols: list[Protocol] = []
        types: dict[Protocol, str] = {}
        ports_per_host = 0
        for info in infos:
            protocol = self.protocol(info.get("protocol", ""), "scaninfo")
            protocols.append(protocol)
            types[protocol] = info.get("type", "")
            ports_per_host += self.integer(info.get("numservices", "0"), "scaninfo numservices")
        method = self.method(types)
        finished = root.find("runstats/finished")
        elapsed = 0.0
        interrupted = False
        if finished is not None:
            elapsed = self.number(finished.get("elapsed", "0"), "runstats elapsed")
            interrupted = finished.get("exit") == "error"
        started = _dt.datetime.fromtimestamp(
            self.integer(root.get("start", "0"), "nmaprun start"), tz=_dt.UTC
        )
        return ScanReport(
            hosts=tuple(hosts),
            method=method,
            started=started,
            elapsed=elapsed,
            protocols=tuple(protocols),  # none for a ping scan (-sn), as portlib reports it
            ports_per_host=ports_per_host,
            args=_split_args(root.get("args", "")),
            interrupted=interrupted,
        )

    def method(self, types: dict[Protocol, str]) -> ScanMethod:
        if not types:
            return ScanMethod.PING
        # A combined -sS -sU scan is described by its TCP method.
        scan_type = types.get(Protocol.TCP, types.get(Protocol.UDP, ""))
        method = _METHOD_OF_TYPE.get(scan_type)
        if method is None or (Protocol.TCP in types and method is ScanMethod.UDP):
            raise self.fail(
                f"scan type {scan_type!r} is not one portlib reads (connect, syn, ack, udp)"
            )
        return method

    def host(self, element: ET.Element) -> HostResult:
        status = element.find("status")
        if status is None:
            raise self.fail("a <host> has no <status>")
        address = self.address(element)
        state = _HOST_STATE.get(status.get("state", ""))
        if state is None:
            raise self.fail(f"host {address}: unknown host state {status.get('state')!r}")
        names = element.findall("hostnames/hostname")
        names.sort(key=lambda n: n.get("type") != "user")  # the name the user gave first
        hostname = next((n.get("name") for n in names if n.get("name")), None)
        ports = [self.port(address, p) for p in element.iterfind("ports/port")]
        for extra in element.iterfind("ports/extraports"):
            ports.extend(self.extraports(address, extra))
        times = element.find("times")
        latency = None
        if times is not None and times.get("srtt", "").isdigit():
            latency = int(times.get("srtt", "0")) / 1e6  # nmap writes microseconds
        return HostResult(
            address=address,
            hostname=hostname,
            state=state,
            reason=self.reason(status.get("reason", "")),
            ports=tuple(sorted(ports, key=lambda p: (p.port, p.protocol.value))),
            latency=latency,
        )

    def address(self, host: ET.Element) -> IPAddress:
        for element in host.findall("address"):
            if element.get("addrtype", "ipv4") in {"ipv4", "ipv6"}:
                text = element.get("addr", "")
                try:
                    return ip_address(text)
                except ValueError:
                    raise self.fail(f"bad host address {text!r}") from None
        raise self.fail("a <host> has no IPv4 or IPv6 <address>")

    def port(self, host: IPAddress, element: ET.Element) -> PortResult:
        portid = self.port_number(element.get("portid", ""), host)
        where = f"host {host} port {portid}"
        state = element.find("state")
        if state is None:
            raise self.fail(f"{where}: no <state>")
        service = element.find("service")
        service_name = service.get("name") if service is not None else None
        detected = None
        if service is not None and service.get("method") == "probed" and service_name:
            detected = self.detected(service, service_name, where)
        return PortResult(
            host=host,
            port=portid,
            protocol=self.protocol(element.get("protocol", ""), where),
            state=self.state(state.get("state", ""), where),
            reason=self.reason(state.get("reason", "")),
            service=service_name or None,
            detected=detected,
        )

    def detected(self, service: ET.Element, name: str, where: str) -> DetectedService:
        conf = self.integer(service.get("conf", "10"), f"{where} service conf")
        return detected_service(service, name, conf)

    def extraports(self, host: IPAddress, element: ET.Element) -> Iterator[PortResult]:
        state = self.state(element.get("state", ""), f"host {host} extraports")
        for group in element.iterfind("extrareasons"):
            spec = group.get("ports")
            if spec is None:
                continue  # before nmap 7.92 only the count was written
            where = f"host {host} extrareasons"
            protocol = self.protocol(group.get("proto", "tcp"), where)
            reason = self.reason(group.get("reason", ""))
            try:
                numbers = expand_ports(spec)
            except ValueError as exc:
                raise self.fail(f"{where}: {exc}") from None
            for number in numbers:
                yield PortResult(host, number, protocol, state, reason)

    def protocol(self, text: str, where: str) -> Protocol:
        protocol = _PROTOCOLS.get(text)
        if protocol is None:
            raise self.fail(f"{where}: protocol {text!r} is not one portlib reads (tcp, udp)")
        return protocol

    def state(self, text: str, where: str) -> PortState:
        state = _STATES.get(text)
        if state is None:
            raise self.fail(f"{where}: unknown port state {text!r}")
        return state

    @staticmethod
    def reason(text: str) -> Reason:
        return _REASONS.get(text, Reason.UNKNOWN_RESPONSE)

    def port_number(self, text: str, host: IPAddress) -> int:
        if not text.isdigit() or int(text) > 65535:
            raise self.fail(f"host {host}: bad port number {text!r}")
        return int(text)

    def integer(self, text: str, what: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise self.fail(f"{what} is not a whole number: {text!r}") from None

    def number(self, text: str, what: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise self.fail(f"{what} is not a number: {text!r}") from None


def _split_args(text: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(text))
    except ValueError:  # unbalanced quotes in a hand-edited file: keep the words
        return tuple(text.split())
