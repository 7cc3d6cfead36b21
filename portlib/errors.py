"""Pure: the one error family every public portlib function raises.

Each class also derives from the built-in exception a caller would naturally
catch (``ValueError`` for bad input, ``PermissionError`` for missing rights,
``LookupError`` for "nothing there"), so ``except ValueError`` keeps working for
people who do not know portlib's names. The CLI turns any ``PortlibError`` into
one line on stderr and exit status 2.
"""

from __future__ import annotations


class PortlibError(Exception):
    """Base of every error portlib raises on purpose."""


class TargetSpecError(PortlibError, ValueError):
    """A target specification (host, CIDR, range, file) is malformed or does not resolve.

    >>> from portlib import parse_targets
    >>> parse_targets("300.1.1.1")  # doctest: +SKIP
    TargetSpecError: bad target '300.1.1.1': octet 300 is out of range 0-255
    """


class PortSpecError(PortlibError, ValueError):
    """A port specification (``22,80,1000-2000``, ``T:80,U:53``, ``http``) is malformed."""


class ParseError(PortlibError, ValueError):
    """A system table (``/proc/net/tcp``, a services file, an XML report) could not be parsed.

    ``source`` names the file and ``line`` the 1-based line number when known.
    """

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None):
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        super().__init__(f"{where}{message}")
        self.source = source
        self.line = line


class PrivilegeError(PortlibError, PermissionError):
    """The operation needs a privilege (for example ``CAP_NET_RAW``) this process lacks."""


class NoSuchProcess(PortlibError, LookupError):
    """The process does not exist (or exited while we looked at it)."""

    def __init__(self, pid: int, message: str | None = None):
        super().__init__(message or f"no process with PID {pid}")
        self.pid = pid


class PermissionDenied(PortlibError, PermissionError):
    """The process exists but this user may not inspect or signal it."""

    def __init__(self, pid: int, message: str | None = None):
        super().__init__(message or f"not permitted to inspect or signal PID {pid}")
        self.pid = pid


class PortNotInUse(PortlibError, LookupError):
    """No socket holds the port a caller asked about (``kill_port`` on an idle port)."""


class NoFreePort(PortlibError, LookupError):
    """Every port in the searched range is taken or reserved."""


class UnknownService(PortlibError, LookupError):
    """No service of that name (or on that port) is in the registry."""


class SizeOverflowError(PortlibError, OverflowError):
    """A target or probe space is too large for ``len()``; its exact ``size`` still works."""


class SocketQueryError(PortlibError, ValueError):
    """A socket query got a bad argument (unknown kind, state, protocol, signal, port)."""


class ScanError(PortlibError):
    """A scan could not start or continue (bad option, nothing to scan, resource exhaustion)."""


class ReportFormatError(ParseError):
    """A report file (nmap XML, portlib JSON) is not in a format portlib can read."""


class OutputError(PortlibError, OSError):
    """A report could not be written: a missing or unwritable directory, a full disk, or a
    symlink that another user planted in a shared directory such as ``/tmp``."""


__all__ = [
    "NoFreePort",
    "NoSuchProcess",
    "OutputError",
    "ParseError",
    "PermissionDenied",
    "PortNotInUse",
    "PortSpecError",
    "PortlibError",
    "PrivilegeError",
    "ReportFormatError",
    "ScanError",
    "SizeOverflowError",
    "SocketQueryError",
    "TargetSpecError",
    "UnknownService",
]
