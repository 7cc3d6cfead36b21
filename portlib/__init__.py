"""portlib: what nmap, ss, lsof and fuser answer, as a Python library.

    >>> import portlib
    >>> report = portlib.scan("localhost", "22,80,8000-8100")      # doctest: +SKIP
    >>> [p.port for p in report.open_ports()]                        # doctest: +SKIP
    [22, 8000]
    >>> portlib.who_uses(8000)[0].owners[0].name                     # doctest: +SKIP
    'python3'

``import portlib`` is cheap: errors and value types load at once, everything
else (and scapy above all) on first use of the name that needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from portlib.errors import (
    NoFreePort,
    NoSuchProcess,
    OutputError,
    ParseError,
    PermissionDenied,
    PortlibError,
    PortNotInUse,
    PortSpecError,
    PrivilegeError,
    ReportFormatError,
    ScanError,
    SizeOverflowError,
    SocketQueryError,
    TargetSpecError,
    UnknownService,
)
from portlib.model import (
    Certificate,
    DetectedService,
    DetectionMethod,
    Endpoint,
    Family,
    FoldedPorts,
    FoldedReason,
    HostResult,
    HostState,
    PortRanges,
    PortResult,
    PortState,
    Process,
    Protocol,
    Reason,
    ScanMethod,
    ScanReport,
    Service,
    Socket,
    SocketState,
    UnixSocket,
)
from portlib.version import __version__ as __version__

# name -> module that defines it, or "module:name" when it is called otherwise there;
# loaded on first attribute access (PEP 562).
_LAZY: dict[str, str] = {
    "scan": "portlib.scanning.scanner",
    "scan_async": "portlib.scanning.scanner",
    "Scanner": "portlib.scanning.scanner",
    "detect_services": "portlib.scanning.versions",
    "detect_services_async": "portlib.scanning.versions",
    "sockets": "portlib.socktable",
    "listening": "portlib.socktable",
    "who_uses": "portlib.socktable",
    "ports_of": "portlib.socktable",
    "kill_port": "portlib.socktable",
    "destroy_sockets": "portlib.socktable",
    "socket_summary": "portlib.socktable",
    "parse_socket_filter": "portlib.socktable",
    "watch_sockets": "portlib.socktable.watch",
    "SocketFilter": "portlib.socktable.filters",
    "FilterSyntaxError": "portlib.socktable.filterparse",
    "PortStillHeld": "portlib.socktable.killing",
    "DestroyUnsupported": "portlib.socktable.destroy",
    "SocketSummary": "portlib.socktable.summary",
    "SocketDetails": "portlib.socktable.details",
    "SocketTimer": "portlib.socktable.details",
    "SocketMemory": "portlib.socktable.details",
    "TcpInfo": "portlib.socktable.details",
    "TimerKind": "portlib.socktable.details",
    "SocketEvent": "portlib.socktable.sockevents",
    "SocketEventKind": "portlib.socktable.sockevents",
    "is_port_free": "portlib.ports",
    "find_free_port": "portlib.ports",
    "reserve_port": "portlib.ports",
    "port_ranges": "portlib.ports",
    "service_name": "portlib.services",
    "service_port": "portlib.services",
    "top_ports": "portlib.services",
    "service_ports": "portlib.services",
    "service_names": "portlib.services",
    "service_for_port": "portlib.services",
    "parse_ports": "portlib.portspec",
    "parse_targets": "portlib.targets",
    "PortList": "portlib.portspec",
    "Target": "portlib.targets",
    "TargetSet": "portlib.targets",
    "load_report": "portlib.output:load",
    "parse_report": "portlib.output:parse",
    "dump_report": "portlib.output:dump",
    "render_report": "portlib.output:render",
}

if TYPE_CHECKING:
    from portlib.output import dump as dump_report
    from portlib.output import load as load_report
    from portlib.output import parse as parse_report
    from portlib.output import render as render_report
    from portlib.ports import find_free_port, is_port_free, port_ranges, reserve_port
    from portlib.portspec import PortList, parse_ports
    from portlib.scanning.scanner import Scanner, scan, scan_async
    from portlib.scanning.versions import detect_services, detect_services_async
    from portlib.services import (
        service_for_port,
        service_name,
        service_names,
        service_port,
        service_ports,
        top_ports,
    )
    from portlib.socktable import (
        destroy_sockets,
        kill_port,
        listening,
        parse_socket_filter,
        ports_of,
        socket_summary,
        sockets,
        who_uses,
    )
    from portlib.socktable.destroy import DestroyUnsupported
    from portlib.socktable.details import (
        SocketDetails,
        SocketMemory,
        SocketTimer,
        TcpInfo,
        TimerKind,
    )
    from portlib.socktable.filterparse import FilterSyntaxError
    from portlib.socktable.filters import SocketFilter
    from portlib.socktable.killing import PortStillHeld
    from portlib.socktable.sockevents import SocketEvent, SocketEventKind
    from portlib.socktable.summary import SocketSummary
    from portlib.socktable.watch import watch_sockets
    from portlib.targets import Target, TargetSet, parse_targets


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'portlib' has no attribute {name!r}")
    module_name, _, attribute = where.partition(":")
    value = getattr(importlib.import_module(module_name), attribute or name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Certificate",
    "DestroyUnsupported",
    "DetectedService",
    "DetectionMethod",
    "Endpoint",
    "Family",
    "FilterSyntaxError",
    "FoldedPorts",
    "FoldedReason",
    "HostResult",
    "HostState",
    "NoFreePort",
    "NoSuchProcess",
    "OutputError",
    "ParseError",
    "PermissionDenied",
    "PortList",
    "PortNotInUse",
    "PortRanges",
    "PortResult",
    "PortSpecError",
    "PortState",
    "PortStillHeld",
    "PortlibError",
    "PrivilegeError",
    "Process",
    "Protocol",
    "Reason",
    "ReportFormatError",
    "ScanError",
    "ScanMethod",
    "ScanReport",
    "Scanner",
    "Service",
    "SizeOverflowError",
    "Socket",
    "SocketDetails",
    "SocketEvent",
    "SocketEventKind",
    "SocketFilter",
    "SocketMemory",
    "SocketQueryError",
    "SocketState",
    "SocketSummary",
    "SocketTimer",
    "Target",
    "TargetSet",
    "TargetSpecError",
    "TcpInfo",
    "TimerKind",
    "UnixSocket",
    "UnknownService",
    "destroy_sockets",
    "detect_services",
    "detect_services_async",
    "dump_report",
    "find_free_port",
    "is_port_free",
    "kill_port",
    "listening",
    "load_report",
    "parse_ports",
    "parse_report",
    "parse_socket_filter",
    "parse_targets",
    "port_ranges",
    "ports_of",
    "render_report",
    "reserve_port",
    "scan",
    "scan_async",
    "service_for_port",
    "service_name",
    "service_names",
    "service_port",
    "service_ports",
    "socket_summary",
    "sockets",
    "top_ports",
    "watch_sockets",
    "who_uses",
]
