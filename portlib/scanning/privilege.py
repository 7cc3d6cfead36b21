"""Whether this process may send raw packets, and the one message when it may not."""

from __future__ import annotations

from portlib.errors import PrivilegeError


def has_raw_privilege() -> bool:
    """Whether this process holds ``CAP_NET_RAW`` (bit 13 of CapEff)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> 13 & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def privilege_error(what: str) -> PrivilegeError:
    """The error for ``what`` (e.g. "method syn") run without ``CAP_NET_RAW``."""
    return PrivilegeError(
        f"{what} needs CAP_NET_RAW (run as root, or grant the capability); "
        "method='connect' (portlib scan -sT) and discovery='connect' need no privileges"
    )


def require_raw_privilege(what: str) -> None:
    """Raise :func:`privilege_error` unless this process may send raw packets."""
    if not has_raw_privilege():
        raise privilege_error(what)
