"""Read portlib's JSON report (``portlib scan --json``, ``render(report, "json")``) back.

The inverse of :mod:`portlib.output.jsonout` for a ScanReport: field names are
the dataclass fields, enums their string values, addresses strings, times ISO
8601, a host's folded states (``extra_ports``) port ranges as ``[first, last]``
pairs. Fields a newer portlib may add are ignored; fields with defaults may be
missing. Types are exact (``"false"`` is not a boolean, ``Infinity`` not a
number), every port belongs to the host it is listed under, and the limits of
:mod:`portlib.output.reportchecks` hold. Anything else raises ReportFormatError
naming the source.

    >>> from portlib.output import load
    >>> report = load("scan.json")                                  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable
from enum import StrEnum
from functools import partial
from ipaddress import ip_address
from typing import Any, TypeVar

import portlib.output.reportchecks as checks
from portlib.errors import ReportFormatError
from portlib.model import (
    Certificate,
    DetectedService,
    DetectionMethod,
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
from portlib.output.reportinput import ReportInput

E = TypeVar("E", bound=StrEnum)
T = TypeVar("T")


def read_json_report(source: ReportInput) -> ScanReport:
    """A ScanReport from portlib's JSON; ReportFormatError, naming the input, for anything else."""
    data = source.read_all()
    try:
        document = json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise ReportFormatError(f"not valid JSON: {exc}", source=source.name) from None
    return _Reader(source.name).report(document)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class _Reader:
    def __init__(self, name: str) -> None:
        self.name = name
        self.budget = checks.VerdictBudget(self.fail)

    def fail(self, message: str) -> ReportFormatError:
        return ReportFormatError(message, source=self.name)

    def report(self, doc: Any) -> ScanReport:
        doc = self.mapping(doc, "the report")
        if "hosts" not in doc or "method" not in doc:
            raise self.fail("not a portlib scan report: it has no 'hosts' and 'method'")
        started = self.time(doc.get("started"))
        elapsed = self.seconds(doc.get("elapsed", 0.0), "elapsed")
        checks.check_span(started, elapsed, self.fail)
        args = tuple(self.text(a, "args") for a in self.sequence(doc.get("args", []), "args"))
        checks.command_text(" ".join(args), self.fail)
        return ScanReport(
            hosts=tuple(self.host(h) for h in self.sequence(doc["hosts"], "hosts")),
            method=self.enum(ScanMethod, doc["method"], "method"),
            started=started,
            elapsed=elapsed,
            protocols=tuple(
                self.enum(Protocol, p, "protocols")
                for p in self.sequence(doc.get("protocols", ["tcp"]), "protocols")
            ),
            ports_per_host=self.integer(doc.get("ports_per_host", 0), "ports_per_host"),
            args=args,
            interrupted=self.boolean(doc.get("interrupted", False), "interrupted"),
            probes_sent=self.integer(doc.get("probes_sent", 0), "probes_sent"),
        )

    def host(self, doc: Any) -> HostResult:
        doc = self.mapping(doc, "a host")
        address = self.address(doc.get("address"))
        where = f"host {address}"
        listed = self.sequence(doc.get("ports", []), f"{where} ports")
        self.budget.take(len(listed))
        ports = tuple(self.port(p, where) for p in listed)
        folded = tuple(
            self.folded(f, where)
            for f in self.sequence(doc.get("extra_ports", []), f"{where} extra_ports")
        )
        tally = checks.PortTally(address, self.fail)
        for port in ports:
            tally.add(port.protocol, 1)
        for fold in folded:
            for group in fold.reasons:
                tally.add(group.protocol, group.count)
        checks.check_host_ports(address, ports, self.fail)
        checks.check_folded(address, ports, folded, self.fail)
        return HostResult(
            address=address,
            hostname=self.optional(self.text, doc.get("hostname"), f"{where} hostname"),
            state=self.enum(HostState, doc.get("state"), f"{where} state"),
            reason=self.enum(Reason, doc.get("reason"), f"{where} reason"),
            ports=ports,
            latency=self.optional(self.seconds, doc.get("latency"), f"{where} latency"),
            timed_out=self.boolean(doc.get("timed_out", False), f"{where} timed_out"),
            extra_ports=folded,
        )

    def folded(self, value: Any, where: str) -> FoldedPorts:
        """One of a host's ``extra_ports``: a state and its reasons' port ranges."""
        doc = self.mapping(value, f"{where} extra_ports")
        state = self.enum(PortState, doc.get("state"), f"{where} extra_ports state")
        where = f"{where} extra_ports {state}"
        reasons = self.sequence(doc.get("reasons"), f"{where} reasons")
        return FoldedPorts(state, tuple(self.folded_reason(r, where) for r in reasons))

    def folded_reason(self, value: Any, where: str) -> FoldedReason:
        doc = self.mapping(value, f"{where} reasons")
        ranges = self.sequence(doc.get("ranges"), f"{where} ranges")
        self.budget.take(len(ranges))
        runs: list[tuple[int, int]] = []
        for run in ranges:
            if (
                not isinstance(run, list)
                or len(run) != 2
                or any(type(n) is not int or not 0 <= n <= 65535 for n in run)
                or run[0] > run[1]
            ):
                raise self.fail(f"{where}: {_short(run)} is not a [first, last] port range")
            if runs and run[0] <= runs[-1][1]:
                raise self.fail(f"{where}: port ranges out of order at {_short(run)}")
            runs.append((run[0], run[1]))
        return FoldedReason(
            reason=self.enum(Reason, doc.get("reason"), f"{where} reason"),
            protocol=self.enum(Protocol, doc.get("protocol"), f"{where} protocol"),
            ranges=tuple(runs),
        )

    def port(self, doc: Any, where: str) -> PortResult:
        doc = self.mapping(doc, f"a port of {where}")
        number = doc.get("port")
        if type(number) is not int or not 0 <= number <= 65535:
            raise self.fail(f"{where}: bad port number {_short(number)}")
        where = f"{where} port {number}"
        return PortResult(
            host=self.address(doc.get("host")),
            port=number,
            protocol=self.enum(Protocol, doc.get("protocol"), f"{where} protocol"),
            state=self.enum(PortState, doc.get("state"), f"{where} state"),
            reason=self.enum(Reason, doc.get("reason"), f"{where} reason"),
            rtt=self.optional(self.seconds, doc.get("rtt"), f"{where} rtt"),
            service=self.optional(self.text, doc.get("service"), f"{where} service"),
            detected=self.optional(self.detected, doc.get("detected"), f"{where} detected"),
        )

    def detected(self, value: Any, where: str) -> DetectedService:
        """A port's ``detected`` object (service detection), banner and certificate too."""
        doc = self.mapping(value, where)
        text = partial(self.optional, self.text)
        banner = self.text(doc.get("banner", ""), f"{where} banner")
        try:
            raw = banner.encode("latin-1")  # JSON writes bytes one character per byte
        except UnicodeEncodeError:
            raise self.fail(f"{where} banner: not one character per byte") from None
        cpe = self.sequence(doc.get("cpe", []), f"{where} cpe")
        return DetectedService(
            name=self.text(doc.get("name"), f"{where} name"),
            method=self.enum(DetectionMethod, doc.get("method"), f"{where} method"),
            confidence=self.integer(doc.get("confidence"), f"{where} confidence"),
            product=text(doc.get("product"), f"{where} product"),
            version=text(doc.get("version"), f"{where} version"),
            extra_info=text(doc.get("extra_info"), f"{where} extra_info"),
            os_hint=text(doc.get("os_hint"), f"{where} os_hint"),
            device_hint=text(doc.get("device_hint"), f"{where} device_hint"),
            tunnel=text(doc.get("tunnel"), f"{where} tunnel"),
            cpe=tuple(self.text(c, f"{where} cpe") for c in cpe),
            banner=raw,
            certificate=self.optional(
                self.certificate, doc.get("certificate"), f"{where} certificate"
            ),
        )

    def certificate(self, value: Any, where: str) -> Certificate:
        doc = self.mapping(value, where)
        when = partial(self.optional, self.moment)
        names = self.sequence(doc.get("alt_names", []), f"{where} alt_names")
        return Certificate(
            subject=self.text(doc.get("subject"), f"{where} subject"),
            issuer=self.text(doc.get("issuer"), f"{where} issuer"),
            alt_names=tuple(self.text(n, f"{where} alt_names") for n in names),
            not_before=when(doc.get("not_before"), f"{where} not_before"),
            not_after=when(doc.get("not_after"), f"{where} not_after"),
            self_signed=self.boolean(doc.get("self_signed"), f"{where} self_signed"),
        )

    def moment(self, value: Any, what: str) -> _dt.datetime:
        try:
            return _dt.datetime.fromisoformat(self.text(value, what))
        except ValueError:
            raise self.fail(f"{what}: {_short(value)} is not an ISO 8601 time") from None

    # ---- leaves

    def mapping(self, value: Any, what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(f"{what} should be a JSON object, not {type(value).__name__}")
        return value

    def sequence(self, value: Any, what: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(f"{what} should be a JSON array, not {type(value).__name__}")
        return value

    def enum(self, kind: type[E], value: Any, what: str) -> E:
        try:
            return kind(value)
        except ValueError:
            choices = ", ".join(m.value for m in kind)
            raise self.fail(f"{what}: {_short(value)} is not one of {choices}") from None

    def address(self, value: Any) -> IPAddress:
        if not isinstance(value, str):
            raise self.fail(f"bad address {_short(value)}")
        try:
            return ip_address(value)
        except ValueError:
            raise self.fail(f"bad address {_short(value)}") from None

    def time(self, value: Any) -> _dt.datetime:
        if value is None:
            return _dt.datetime.fromtimestamp(0, tz=_dt.UTC)
        try:
            return _dt.datetime.fromisoformat(self.text(value, "started"))
        except ValueError:
            raise self.fail(f"started: {_short(value)} is not an ISO 8601 time") from None

    def seconds(self, value: Any, what: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{what}: {_short(value)} is not a number")
        try:
            number = float(value)
        except OverflowError:
            raise self.fail(f"{what}: {_short(value)} is not a duration in seconds") from None
        return checks.seconds(number, what, self.fail)

    def integer(self, value: Any, what: str) -> int:
        if type(value) is not int or not 0 <= value < 1 << 63:
            raise self.fail(f"{what}: {_short(value)} is not a whole number (0 or more)")
        return value

    def boolean(self, value: Any, what: str) -> bool:
        if type(value) is not bool:
            raise self.fail(f"{what}: {_short(value)} is not true or false")
        return value

    def text(self, value: Any, what: str) -> str:
        if not isinstance(value, str):
            raise self.fail(f"{what}: {_short(value)} is not a string")
        return value

    @staticmethod
    def optional(read: Callable[[Any, str], T], value: Any, what: str) -> T | None:
        return None if value is None else read(value, what)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
