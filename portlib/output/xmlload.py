"""Read nmap's or portlib's XML (``-oX``) back into a ScanReport, refusing hostile files.

The document goes through expat with handlers that refuse any internal DTD
subset, external DTD, entity or notation declaration as the parser meets it, so
no encoding (UTF-16 included) hides one; the bare ``<!DOCTYPE nmaprun>`` nmap
writes is fine. Each top-level ``<host>`` becomes a HostResult as soon as it
closes and its elements are dropped, so memory follows the verdicts, not the XML.

Ports nmap folded into ``<extraports>`` come back folded, as
``HostResult.extra_ports`` (port ranges, never expanded), when nmap listed them
(``extrareasons ports=``, nmap 7.92 and later); older files only say how many
there were, so those ports are missing. A list must hold exactly the count it
declares, no port may be listed or folded twice and no host may have more ports
than a protocol has (:mod:`portlib.output.reportchecks`).
Reasons portlib has no name for become ``unknown-response``. nmap's SCTP and
IP-protocol scans, and TCP scan types other than connect/SYN/ACK, are refused.

    >>> from portlib.output import load
    >>> load("nmap-monday.xml").open_ports()                       # doctest: +SKIP
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from ipaddress import ip_address
from xml.parsers import expat

import portlib.output.reportchecks as checks
from portlib.errors import ReportFormatError
from portlib.model import (
    FoldedPorts,
    FoldedReason,
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
from portlib.output.nmapxml import TCP_SCAN_TYPE
from portlib.output.portsummary import spec_ranges
from portlib.output.reportinput import ReportInput
from portlib.output.sharedtext import split_command_line
from portlib.output.xmlservice import detected_service

_METHOD_OF_TYPE: dict[str, ScanMethod] = {v: k for k, v in TCP_SCAN_TYPE.items()} | {
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
# Children of <nmaprun> the reader keeps; every other one is skipped unbuilt.
_KEPT = frozenset({"host", "scaninfo", "runstats"})
_WHITESPACE = b" \t\r\n"
_UTF8_BOM = b"\xef\xbb\xbf"


def read_nmap_xml(source: ReportInput) -> ScanReport:
    """A ScanReport from nmap's XML; ReportFormatError, naming the input, for anything else."""
    return _Document(_Reader(source.name)).parse(source)


class _Document:
    """expat over the input's chunks: declarations refused, top-level elements built
    one at a time as small trees and handed to the reader."""

    def __init__(self, reader: _Reader) -> None:
        self.reader = reader
        self.depth = 0
        self.root: dict[str, str] | None = None
        self.builder: ET.TreeBuilder | None = None
        self.skipping = False
        self.infos: list[ET.Element] = []
        self.runstats: ET.Element | None = None
        self.hosts: list[HostResult] = []
        parser = expat.ParserCreate()
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = self._doctype
        parser.EntityDeclHandler = self._declaration
        parser.UnparsedEntityDeclHandler = self._declaration
        parser.NotationDeclHandler = self._declaration
        parser.ExternalEntityRefHandler = self._external
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._text
        self.in_cpe = False  # the only element whose text a report keeps (-sV's CPEs)
        self.parser = parser

    def parse(self, source: ReportInput) -> ScanReport:
        try:
            for chunk in _without_leading_blanks(source):
                self.parser.Parse(chunk, False)
            self.parser.Parse(b"", True)
        except expat.ExpatError as exc:
            raise ReportFormatError(
                f"not well-formed XML: {expat.ErrorString(exc.code)} (column {exc.offset})",
                source=source.name,
                line=exc.lineno,
            ) from None
        assert self.root is not None  # expat raises "no element found" otherwise
        return self.reader.report(self.root, self.infos, self.runstats, self.hosts)

    def _doctype(
        self, name: str, system_id: str | None, public_id: str | None, has_subset: int
    ) -> None:
        if system_id or public_id or has_subset:
            raise self.reader.fail(
                "declares a DTD or XML entities, which nmap reports never do; refusing them"
            )

    def _declaration(self, *_details: object) -> None:
        raise self.reader.fail(
            "declares XML entities or notations, which nmap reports never do; refusing them"
        )

    def _external(
        self, context: str, base: str | None, system_id: str | None, public_id: str | None
    ) -> int:
        raise self.reader.fail(
            f"refers to an external entity ({system_id}), which nmap reports never do"
        )

    def _start(self, tag: str, attributes: dict[str, str]) -> None:
        self.depth += 1
        if self.depth == 1:
            if tag != "nmaprun":
                raise self.reader.fail(
                    f"not an nmap XML report: the root element is <{tag}>, not <nmaprun>"
                )
            self.root = attributes
        elif self.depth == 2:
            self.skipping = tag not in _KEPT
            if not self.skipping:
                self.builder = ET.TreeBuilder()
                self.builder.start(tag, attributes)
        elif not self.skipping and self.builder is not None:
            self.builder.start(tag, attributes)
            self.in_cpe = tag == "cpe"

    def _text(self, data: str) -> None:
        if self.in_cpe and self.builder is not None:
            self.builder.data(data)

    def _end(self, tag: str) -> None:
        self.in_cpe = False
        self.depth -= 1
        if self.depth < 1 or self.skipping or self.builder is None:
            return
        self.builder.end(tag)
        if self.depth == 1:
            element = self.builder.close()
            self.builder = None
            if tag == "host":
                self.hosts.append(self.reader.host(element))
            elif tag == "scaninfo":
                self.infos.append(element)
            else:
                self.runstats = element


def _without_leading_blanks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The chunks, less a UTF-8 byte order mark and blank lines before the XML
    declaration (a pasted or triple-quoted report), which would make it illegal."""
    leading = True
    for chunk in chunks:
        if leading:
            chunk = chunk.removeprefix(_UTF8_BOM).lstrip(_WHITESPACE)
            if not chunk:
                continue
            leading = False
        yield chunk


class _Reader:
    """Element-to-dataclass conversion, with the input's name for every error."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.budget = checks.VerdictBudget(self.fail)

    def fail(self, message: str) -> ReportFormatError:
        return ReportFormatError(message, source=self.name)

    def report(
        self,
        root: dict[str, str],
        infos: list[ET.Element],
        runstats: ET.Element | None,
        hosts: list[HostResult],
    ) -> ScanReport:
        protocols: list[Protocol] = []
        types: dict[Protocol, str] = {}
        ports_per_host = 0
        for info in infos:
            protocol = self.protocol(info.get("protocol", ""), "scaninfo")
            protocols.append(protocol)
            types[protocol] = info.get("type", "")
            ports_per_host += checks.whole_number(
                info.get("numservices", "0"),
                "scaninfo numservices",
                self.fail,
                most=checks.PORTS_PER_PROTOCOL,
            )
        method = self.method(types)
        finished = runstats.find("finished") if runstats is not None else None
        elapsed = 0.0
        interrupted = False
        if finished is not None:
            elapsed = checks.seconds(
                self.number(finished.get("elapsed", "0"), "runstats elapsed"),
                "runstats elapsed",
                self.fail,
            )
            interrupted = finished.get("exit") == "error"
        start = checks.whole_number(root.get("start", "0"), "nmaprun start", self.fail)
        started = checks.timestamp(start, "nmaprun start", self.fail)
        checks.check_span(started, elapsed, self.fail)
        args = checks.command_text(root.get("args", ""), self.fail)
        return ScanReport(
            hosts=tuple(hosts),
            method=method,
            started=started,
            elapsed=elapsed,
            protocols=tuple(protocols),  # none for a ping scan (-sn), as portlib reports it
            ports_per_host=ports_per_host,
            args=split_command_line(args),
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
        tally = checks.PortTally(address, self.fail)
        ports = [self.port(address, p, tally) for p in element.iterfind("ports/port")]
        found = (self.extraports(address, e, tally) for e in element.iterfind("ports/extraports"))
        folded = [fold for fold in found if fold is not None]
        ranges = sum(len(group.ranges) for fold in folded for group in fold.reasons)
        self.budget.take(len(ports) + ranges)
        checks.check_host_ports(address, ports, self.fail)
        checks.check_folded(address, ports, folded, self.fail)
        return HostResult(
            address=address,
            hostname=hostname,
            state=state,
            reason=self.reason(status.get("reason", "")),
            ports=tuple(sorted(ports, key=lambda p: (p.port, p.protocol.value))),
            extra_ports=tuple(folded),
            latency=self.latency(element.find("times"), address),
            timed_out=self.timed_out(element.get("timedout"), address),
        )

    def timed_out(self, value: str | None, address: IPAddress) -> bool:
        """nmap's ``timedout`` attribute: absent or "false", or "true"."""
        if value not in (None, "true", "false"):
            raise self.fail(f"host {address}: timedout={value[:20]!r} is not true or false")
        return value == "true"

    def latency(self, times: ET.Element | None, address: IPAddress) -> float | None:
        srtt = times.get("srtt") if times is not None else None
        if srtt is None:
            return None
        micros = checks.whole_number(srtt, f"host {address} srtt", self.fail)
        return checks.seconds(micros / 1e6, f"host {address} srtt", self.fail)  # microseconds

    def address(self, host: ET.Element) -> IPAddress:
        for element in host.findall("address"):
            if element.get("addrtype", "ipv4") in {"ipv4", "ipv6"}:
                text = element.get("addr", "")
                try:
                    return ip_address(text)
                except ValueError:
                    raise self.fail(f"bad host address {text[:60]!r}") from None
        raise self.fail("a <host> has no IPv4 or IPv6 <address>")

    def port(self, host: IPAddress, element: ET.Element, tally: checks.PortTally) -> PortResult:
        portid = self.port_number(element.get("portid", ""), host)
        where = f"host {host} port {portid}"
        state = element.find("state")
        if state is None:
            raise self.fail(f"{where}: no <state>")
        service = element.find("service")
        service_name = service.get("name") if service is not None else None
        protocol = self.protocol(element.get("protocol", ""), where)
        tally.add(protocol, 1)
        detected = None
        if service is not None and service.get("method") == "probed" and service_name:
            detected = detected_service(service, service_name, self.confidence(service, where))
        return PortResult(
            host=host,
            port=portid,
            protocol=protocol,
            state=self.state(state.get("state", ""), where),
            reason=self.reason(state.get("reason", "")),
            service=service_name or None,
            detected=detected,
        )

    def confidence(self, service: ET.Element, where: str) -> int:
        text = service.get("conf", "10")
        if not (text.isascii() and text.isdigit()) or int(text) > 10:
            raise self.fail(f"{where}: service conf {text[:20]!r} is not 0-10")
        return int(text)

    def extraports(
        self, host: IPAddress, element: ET.Element, tally: checks.PortTally
    ) -> FoldedPorts | None:
        """An ``<extraports>`` as a FoldedPorts, its ``<extrareasons>`` groups as port
        ranges, checked against the counts the file declares and never expanded;
        None when no group lists its ports (nmap before 7.92 gave only counts)."""
        where = f"host {host} extraports"
        state = self.state(element.get("state", ""), where)
        declared = checks.whole_number(element.get("count", "0"), f"{where} count", self.fail)
        listed = 0
        groups = []
        for group in element.iterfind("extrareasons"):
            spec = group.get("ports")
            if spec is None:
                continue  # before nmap 7.92 only the count was written
            where = f"host {host} extrareasons"
            protocol = self.protocol(group.get("proto", "tcp"), where)
            try:
                ranges = sorted(spec_ranges(spec))
            except ValueError as exc:
                raise self.fail(f"{where}: {exc}") from None
            found = sum(hi - lo + 1 for lo, hi in ranges)
            count = group.get("count")
            if count is not None and checks.whole_number(count, where, self.fail) != found:
                raise self.fail(f"{where}: ports= lists {found} ports, count= says {count}")
            listed += found
            if listed > declared:
                raise self.fail(f"{where}: more ports than the {declared} of its <extraports>")
            tally.add(protocol, found)
            reason = self.reason(group.get("reason", ""))
            groups.append(FoldedReason(reason, protocol, tuple(ranges)))
        return FoldedPorts(state, tuple(groups)) if groups else None

    def protocol(self, text: str, where: str) -> Protocol:
        protocol = _PROTOCOLS.get(text)
        if protocol is None:
            raise self.fail(f"{where}: protocol {text[:20]!r} is not one portlib reads (tcp, udp)")
        return protocol

    def state(self, text: str, where: str) -> PortState:
        state = _STATES.get(text)
        if state is None:
            raise self.fail(f"{where}: unknown port state {text[:40]!r}")
        return state

    @staticmethod
    def reason(text: str) -> Reason:
        return _REASONS.get(text, Reason.UNKNOWN_RESPONSE)

    def port_number(self, text: str, host: IPAddress) -> int:
        if not (text.isascii() and text.isdigit()) or len(text) > 5 or int(text) > 65535:
            raise self.fail(f"host {host}: bad port number {text[:20]!r}")
        return int(text)

    def number(self, text: str, what: str) -> float:
        if len(text) > 40:
            raise self.fail(f"{what} is not a number: {text[:40]!r}...")
        try:
            return float(text)
        except ValueError:
            raise self.fail(f"{what} is not a number: {text!r}") from None
