"""Port scanning: the Scanner and its engines. See ARCHITECTURE.md for the map.

Re-exports only, loaded on first use, so that importing a pure module of this
package (``portlib.scanning.icmp``, ``portlib.scanning.raw.wire``) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portlib.scanning.options import ScanOptions, parse_methods, resolve_ports, resolve_timing
    from portlib.scanning.report import HostStatus
    from portlib.scanning.scanner import ENGINES, QUEUE_SIZE, Scanner, scan, scan_async

_LAZY: dict[str, str] = {
    "ENGINES": "portlib.scanning.scanner",
    "QUEUE_SIZE": "portlib.scanning.scanner",
    "Scanner": "portlib.scanning.scanner",
    "scan": "portlib.scanning.scanner",
    "scan_async": "portlib.scanning.scanner",
    "ScanOptions": "portlib.scanning.options",
    "parse_methods": "portlib.scanning.options",
    "resolve_ports": "portlib.scanning.options",
    "resolve_timing": "portlib.scanning.options",
    "HostStatus": "portlib.scanning.report",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'portlib.scanning' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ENGINES",
    "QUEUE_SIZE",
    "HostStatus",
    "ScanOptions",
    "Scanner",
    "parse_methods",
    "resolve_ports",
    "resolve_timing",
    "scan",
    "scan_async",
]
