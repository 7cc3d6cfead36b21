"""JSON for portlib's values: dataclass field names, enum values as their strings;
and :class:`JsonWriter`, the ``--json`` report written host by host.

Addresses and datetimes become strings, bytes a string of one character per byte
(latin-1), ranges become ``[first, last]``, sets become sorted lists. Nothing portlib
returns needs a custom decoder to read.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from enum import Enum
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from portlib.model import HostResult, ScanReport
from portlib.output.stream import ReportWriter, ScanHeader, every_port


def to_plain(value: Any) -> Any:
    """Turn a portlib value (or a list/tuple of them) into JSON-ready builtins."""
    if value is None or (
        isinstance(value, bool | int | float | str) and not isinstance(value, Enum)
    ):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, IPv4Address | IPv6Address):
        return str(value)
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):  # banners: one character per byte, exact both ways
        return value.decode("latin-1")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, range):
        return [value.start, value.stop - 1] if len(value) else []
    if isinstance(value, frozenset | set):
        return sorted(to_plain(v) for v in value)
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    raise TypeError(f"cannot turn {type(value).__name__} into JSON")


def dumps(value: Any, *, indent: int | None = 2) -> str:
    """``json.dumps`` of :func:`to_plain`; ``indent=None`` gives one line (for ``--jsonl``)."""
    separators = (",", ":") if indent is None else None
    return json.dumps(to_plain(value), indent=indent, separators=separators)


class JsonWriter(ReportWriter):
    """portlib's JSON report (``--json``), host by host: one JSON document, the same
    fields as ``dumps(report)``, with the hosts' array written as hosts finish and
    what is only known at the end (``elapsed``, ``interrupted``, ``probes_sent``)
    after it. Hosts are written as the model holds them: folded by the scan, or
    every port with ``all_ports`` (``--all-ports``)."""

    first = True  # no host written yet

    def begin_text(self, header: ScanHeader) -> str:
        self.first = True
        fields = {
            "method": header.method,
            "started": header.started,
            "protocols": header.protocols,
            "ports_per_host": header.ports_per_host,
            "args": header.args,
        }
        head = "".join(f"  {json.dumps(k)}: {_inner(v)},\n" for k, v in fields.items())
        return "{\n" + head + '  "hosts": ['

    def host_text(self, host: HostResult) -> str:
        if self.all_ports:
            host = every_port(host)
        text = ("\n    " if self.first else ",\n    ") + _inner(host, 4)
        self.first = False
        return text

    def end_text(self, report: ScanReport) -> str:
        fields = {
            "elapsed": report.elapsed,
            "interrupted": report.interrupted,
            "probes_sent": report.probes_sent,
        }
        tail = "".join(f",\n  {json.dumps(k)}: {_inner(v)}" for k, v in fields.items())
        return ("]" if self.first else "\n  ]") + tail + "\n}\n"


def _inner(value: Any, depth: int = 2) -> str:
    """``value`` as ``dumps`` writes it, its lines after the first moved ``depth``
    spaces in (where it sits in the document)."""
    pad = " " * depth
    return dumps(value).replace("\n", "\n" + pad)
