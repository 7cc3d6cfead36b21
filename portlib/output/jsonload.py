"""Read portlib's JSON report (``portlib scan --json``, ``ScanReport.to_json()``) back.

The inverse of :mod:`portlib.output.jsonout` for a ScanReport: field names are
the dataclass fields, enums their string values, addresses strings, times ISO
8601. Fields a newer portlib may add are ignored; fields with defaults may be
missing. Anything else raises ReportFormatError naming the source.

    >>> from portlib.output.jsonload import from_json
    >>> report = from_json("scan.json")                             # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Callable
from enum import StrEnum
from functools import partial
from ipaddress import ip_address
from typing import Any, TypeVar

from portlib.errors import ReportFormatError
from portlib.model import (
    Certificate,
    DetectedService,
    DetectionMethod,
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
from portlib.output.nmapxml import read_report_source

E = TypeVar("E", bound=StrEnum)
T = TypeVar("T")


def from_json(source: str | os.PathLike[str]) -> ScanReport:
    """A ScanReport from portlib's JSON, given as a path or as the JSON text.

    >>> report = from_json("scan.json")                             # doctest: +SKIP
    >>> from_json(report.to_json()) == report                       # doctest: +SKIP
    True
    """
    return report_from_json_bytes(*read_report_source(source))


def report_from_json_bytes(data: bytes, name: str) -> ScanReport:
    """A ScanReport from the bytes of portlib's JSON; ``name`` is for error messages."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ReportFormatError(f"not valid JSON: {exc}", source=name) from None
    return report_from_plain(document, name)


def report_from_plain(document: Any, name: str = "<report>") -> ScanReport:
    """A ScanReport from the builtins ``jsonout.to_plain(report)`` gives."""
    return _Reader(name).report(document)


class _Reader:
    def __init__(self, name: str) -> None:
        self.name = name

    def fail(self, message: str) -> ReportFormatError:
        return ReportFormatError(message, source=self.name)

    def report(self, doc: Any) -> ScanReport:
        doc = self.mapping(doc, "the report")
        if "hosts" not in doc or "method" not in doc:
            raise self.fail("not a portlib scan report: it has no 'hosts' and 'method'")
        return ScanReport(
            hosts=tuple(self.host(h) for h in self.sequence(doc["hosts"], "hosts")),
            method=self.enum(ScanMethod, doc["method"], "method"),
            started=self.time(doc.get("started")),
            elapsed=self.number(doc.get("elapsed", 0.0), "elapsed"),
            protocols=tuple(
                self.enum(Protocol, p, "protocols")
                for p in self.sequence(doc.get("protocols", ["tcp"]), "protocols")
            ),
            ports_per_host=self.integer(doc.get("ports_per_host", 0), "ports_per_host"),
            args=tuple(self.text(a, "args") for a in self.sequence(doc.get("args", []), "args")),
            interrupted=bool(doc.get("interrupted", False)),
            probes_sent=self.integer(doc.get("probes_sent", 0), "probes_sent"),
        )

    def host(self, doc: Any) -> HostResult:
        doc = self.mapping(doc, "a host")
        address = self.address(doc.get("address"))
        where = f"host {address}"
        latency = doc.get("latency")
        return HostResult(
            address=address,
            hostname=self.optional(self.text, doc.get("hostname"), f"{where} hostname"),
            state=self.enum(HostState, doc.get("state"), f"{where} state"),
            reason=self.enum(Reason, doc.get("reason"), f"{where} reason"),
            ports=tuple(
                self.port(p, where) for p in self.sequence(doc.get("ports", []), f"{where} ports")
            ),
            latency=None if latency is None else self.number(latency, f"{where} latency"),
        )

    def port(self, doc: Any, where: str) -> PortResult:
        doc = self.mapping(doc, f"a port of {where}")
        number = doc.get("port")
        if type(number) is not int or not 0 <= number <= 65535:
            raise self.fail(f"{where}: bad port number {number!r}")
        where = f"{where} port {number}"
        rtt = doc.get("rtt")
        return PortResult(
            host=self.address(doc.get("host")),
            port=number,
            protocol=self.enum(Protocol, doc.get("protocol"), f"{where} protocol"),
            state=self.enum(PortState, doc.get("state"), f"{where} state"),
            reason=self.enum(Reason, doc.get("reason"), f"{where} reason"),
            rtt=None if rtt is None else self.number(rtt, f"{where} rtt"),
            service=self.optional(self.text, doc.get("service"), f"{where} service"),
            detected=self.optional(self.detected, doc.get("detected"), f"{where} detected"),
        )

    def detected(self, value: Any, where: str) -> DetectedService:
        """A port's ``detected`` object (service detection), banner and certificate too."""
        doc = self.mapping(value, where)
        text = partial(self.optional, self.text)
        cpe = self.sequence(doc.get("cpe", []), f"{where} cpe")
        banner = self.text(doc.get("banner", ""), f"{where} banner")
        try:
            raw = banner.encode("latin-1")  # JSON writes bytes one character per byte
        except UnicodeEncodeError:
            raise self.fail(f"{where} banner: not one character per byte") from None
        certificate = doc.get("certificate")
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
            certificate=self.optional(self.certificate, certificate, f"{where} certificate"),
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
            self_signed=doc.get("self_signed") is True,
        )

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
            raise self.fail(f"{what}: {value!r} is not one of {choices}") from None

    def address(self, value: Any) -> IPAddress:
        if not isinstance(value, str):
            raise self.fail(f"bad address {value!r}")
        try:
            return ip_address(value)
        except ValueError:
            raise self.fail(f"bad address {value!r}") from None

    def time(self, value: Any) -> _dt.datetime:
        if value is None:
            return _dt.datetime.fromtimestamp(0, tz=_dt.UTC)
        try:
            return _dt.datetime.fromisoformat(self.text(value, "started"))
        except ValueError:
            raise self.fail(f"started: {value!r} is not an ISO 8601 time") from None

    def moment(self, value: Any, what: str) -> _dt.datetime:
        try:
            return _dt.datetime.fromisoformat(self.text(value, what))
        except ValueError:
            raise self.fail(f"{what}: {value!r} is not an ISO 8601 time") from None

    def number(self, value: Any, what: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{what}: {value!r} is not a number")
        return float(value)

    def integer(self, value: Any, what: str) -> int:
        if type(value) is not int:
            raise self.fail(f"{what}: {value!r} is not a whole number")
        return value

    def text(self, value: Any, what: str) -> str:
        if not isinstance(value, str):
            raise self.fail(f"{what}: {value!r} is not a string")
        return value

    @staticmethod
    def optional(read: Callable[[Any, str], T], value: Any, what: str) -> T | None:
        return None if value is None else read(value, what)
