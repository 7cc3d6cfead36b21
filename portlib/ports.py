"""Free, reserved and privileged ports: the kernel's port policy, and port picking without races.

Registering a port (IANA, ``/etc/services``) is a convention: any program may
bind any free port. What the kernel enforces is read by :func:`port_ranges`:

- ports below ``ip_unprivileged_port_start`` (1024 by default) need root or
  ``CAP_NET_BIND_SERVICE``;
- ``ip_local_port_range`` is where the kernel picks ports for outgoing
  connections and for ``bind(port=0)``;
- ``ip_local_reserved_ports`` are never picked automatically, but can still be
  bound by asking for them.

"Is it free?" is answered by trying: :func:`is_port_free` binds the port with
the options a server uses and lets go. A port found free can be taken by
someone else a moment later, so :func:`reserve_port` returns the bound socket
itself; hand that socket to the server instead of its number::

    sock = reserve_port()                     # bound to 127.0.0.1, kernel-chosen port
    sock.listen()                             # serve on it directly, or:
    server = await asyncio.start_server(handle, sock=sock)

To give the port to another process, pass the socket down (``os.set_inheritable
(sock.fileno(), True)`` and ``subprocess.Popen(..., pass_fds=[sock.fileno()])``)
or, if the program can only take a number, close the socket just before starting
it: a socket that never listened leaves nothing behind, so the port binds at once.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import random
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from portlib.errors import (
    NoFreePort,
    ParseError,
    PortlibError,
    PortSpecError,
    PrivilegeError,
    TargetSpecError,
)
from portlib.model import PortRanges, Protocol
from portlib.services import MAX_PORT, as_protocol, check_port, small_number

_SYSCTL_DIR = "sys/net/ipv4"
# Linux before 4.11 has no ip_unprivileged_port_start: the limit was the constant 1024.
DEFAULT_UNPRIVILEGED_START = 1024
_KERNEL_PICK_ATTEMPTS = 64

# An IP address of this machine, or None for every address of both families.
Host = str | ipaddress.IPv4Address | ipaddress.IPv6Address | None

# -- pure parsers of the sysctl files ---------------------------------------------------


def parse_local_port_range(text: str, source: str = "ip_local_port_range") -> range:
    """``"32768\\t60999\\n"`` -> ``range(32768, 61000)``."""
    fields = text.split()
    low, high = (small_number(f) for f in fields) if len(fields) == 2 else (None, None)
    if low is None or high is None:
        raise ParseError(f"expected two port numbers, got {text.strip()!r}", source=source)
    if not 1 <= low <= high <= MAX_PORT:
        raise ParseError(f"bad port range {low}-{high}", source=source)
    return range(low, high + 1)


def parse_unprivileged_start(text: str, source: str = "ip_unprivileged_port_start") -> int:
    """``"1024\\n"`` -> ``1024`` (0 means no port is privileged)."""
    value = text.strip()
    number = small_number(value)
    if number is None or number > MAX_PORT:
        raise ParseError(f"expected a port number 0-{MAX_PORT}, got {value!r}", source=source)
    return number


def parse_reserved_ports(text: str, source: str = "ip_local_reserved_ports") -> frozenset[int]:
    """The kernel's list form ``"8080,9000-9010"`` (empty when none) -> a set of ports."""
    ports: set[int] = set()
    value = text.strip()
    if not value:
        return frozenset()
    for part in value.split(","):
        first, dash, last = part.strip().partition("-")
        low, high = small_number(first), small_number(last) if dash else small_number(first)
        if low is None or high is None:
            raise ParseError(f"bad reserved port entry {part!r} in {value!r}", source=source)
        if not low <= high <= MAX_PORT:
            raise ParseError(f"bad reserved port range {part!r}", source=source)
        ports.update(range(low, high + 1))
    return frozenset(ports)


def port_ranges(procfs: str | Path = "/proc") -> PortRanges:
    """The kernel's port policy for this network namespace, read from ``procfs``.

    ``ip_local_port_range`` must be readable (else ParseError: procfs is missing
    or not Linux's). The two newer files fall back to what kernels without them
    do: ``ip_unprivileged_port_start`` (Linux 4.11+) to 1024 and
    ``ip_local_reserved_ports`` (2.6.35+) to none. A file that exists but does
    not parse raises ParseError naming it.

    Example:

    >>> import portlib
    >>> portlib.port_ranges()  # doctest: +SKIP
    PortRanges(ephemeral=range(32768, 61000), unprivileged_start=1024, reserved=frozenset())
    """
    base = Path(procfs) / _SYSCTL_DIR
    range_file = base / "ip_local_port_range"
    text = _read(range_file)
    if text is None:
        raise ParseError(
            "cannot read the ephemeral port range (is procfs mounted?)", source=str(range_file)
        )
    ephemeral = parse_local_port_range(text, str(range_file))
    start_file = base / "ip_unprivileged_port_start"
    start_text = _read(start_file)
    unprivileged = (
        DEFAULT_UNPRIVILEGED_START
        if start_text is None
        else parse_unprivileged_start(start_text, str(start_file))
    )
    return PortRanges(
        ephemeral=ephemeral, unprivileged_start=unprivileged, reserved=_reserved(base)
    )


def _reserved(base: Path) -> frozenset[int]:
    path = base / "ip_local_reserved_ports"
    text = _read(path)
    return frozenset() if text is None else parse_reserved_ports(text, str(path))


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ParseError(f"cannot read: {exc}", source=str(path)) from exc


# -- binding ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Where:
    """Where to bind: one address, or (``address is None``) every address of both families."""

    family: socket.AddressFamily
    address: str
    dual_stack: bool
    label: str


def _where(host: Host) -> _Where:
    if host is None:
        # A server on "::" with IPV6_V6ONLY off takes the port on every IPv4 and IPv6
        # address at once, so its bind fails if anything holds the port on either family.
        if _ipv6_usable():
            return _Where(socket.AF_INET6, "::", True, "all interfaces")
        return _Where(socket.AF_INET, "0.0.0.0", False, "all interfaces")
    if isinstance(host, ipaddress.IPv4Address | ipaddress.IPv6Address):
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = host
    elif isinstance(host, str):
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            raise TargetSpecError(
                f"bad host {host!r}: give an IP address of this machine (127.0.0.1, ::1)"
                " or None for all interfaces"
            ) from None
    else:
        raise TargetSpecError(
            f"host must be an IP address string or None, not {type(host).__name__}"
        )
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    return _Where(family, str(address), False, str(address))


@functools.cache
def _ipv6_usable() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def _bind(protocol: Protocol, where: _Where, port: int, *, server_options: bool) -> socket.socket:
    """A socket bound to ``where``:``port``; OSError from bind propagates.

    ``server_options``: SO_REUSEADDR on TCP, as servers set it so a port with only
    TIME-WAIT leftovers counts as free. Sockets portlib keeps (reservations) go
    without it: Linux lets two SO_REUSEADDR sockets share a port until one listens,
    so a reservation with it would not keep another server out.
    """
    kind = socket.SOCK_STREAM if protocol is Protocol.TCP else socket.SOCK_DGRAM
    sock = socket.socket(where.family, kind)
    try:
        if server_options and protocol is Protocol.TCP:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if where.dual_stack:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((where.address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _bind_error(exc: OSError, protocol: Protocol, where: _Where, port: int) -> PortlibError:
    """The portlib error for a bind failure other than "in use"."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PrivilegeError(
            f"binding {port}/{protocol} needs root or CAP_NET_BIND_SERVICE: ports below"
            f" ip_unprivileged_port_start ({_unprivileged_start()}) are privileged;"
            f" portlib.who_uses({port}) tells whether something holds it"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return TargetSpecError(f"{where.label} is not an address of this machine")
    return PortlibError(f"cannot bind {port}/{protocol} on {where.label}: {exc.strerror}")


def _unprivileged_start() -> int:
    try:
        return port_ranges().unprivileged_start
    except ParseError:
        return DEFAULT_UNPRIVILEGED_START


def is_port_free(port: int, protocol: Protocol | str = "tcp", host: Host = None) -> bool:
    """Whether a server could bind ``port`` now: tries it, with a server's socket options.

    ``host`` is an IP address (``"127.0.0.1"``, ``"::1"``, an ``ipaddress`` object),
    or None for every address of both families, as a server on ``::``/``0.0.0.0``
    needs. TCP binds with SO_REUSEADDR like servers do (TIME-WAIT leftovers do not
    count); UDP binds plainly. Raises PortSpecError for a port outside 1-65535 or a
    protocol other than tcp/udp, TargetSpecError for a host that is not one of this
    machine's addresses, PrivilegeError for a privileged port without the privilege.

    Example:

    >>> import portlib
    >>> portlib.is_port_free(8000)  # doctest: +SKIP
    False
    >>> portlib.is_port_free(8000, host="::1")  # doctest: +SKIP
    True
    """
    port = check_port(port, lowest=1)
    proto = as_protocol(protocol)
    where = _where(host)
    try:
        _bind(proto, where, port, server_options=True).close()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return False
        raise _bind_error(exc, proto, where, port) from None
    return True


def _port_range(port_range: object) -> range:
    """``range(8000, 9000)`` or ``"8000-8999"`` (inclusive) -> a non-empty range in 1-65535."""
    if isinstance(port_range, str):
        first, dash, last = port_range.strip().partition("-")
        low, high = small_number(first.strip()), small_number(last.strip())
        if low is None or high is None or not dash:
            raise PortSpecError(
                f"bad port range {port_range!r}: write it as FIRST-LAST, e.g. 8000-8999"
            )
        result = range(low, high + 1)
        if not result:
            raise PortSpecError(f"bad port range {port_range!r}: {first} is above {last}")
    elif isinstance(port_range, range):
        result = port_range
    else:
        raise PortSpecError(
            f"port_range must be a range or a 'FIRST-LAST' string, not {type(port_range).__name__}"
        )
    if not result:
        raise PortSpecError(f"port range {port_range!r} is empty")
    if min(result[0], result[-1]) < 1 or max(result[0], result[-1]) > MAX_PORT:
        raise PortSpecError(f"port range {port_range!r} goes outside 1-{MAX_PORT}")
    return result


def _excluded(exclude: Iterable[int]) -> frozenset[int]:
    try:
        items = list(exclude)
    except TypeError:
        raise PortSpecError(f"exclude must be a collection of ports, not {exclude!r}") from None
    return frozenset(check_port(p, lowest=1) for p in items)


def _take_kernel_pick(protocol: Protocol, where: _Where, excluded: frozenset[int]) -> socket.socket:
    """Let the kernel choose (it skips busy and reserved ports), retrying past ``excluded``."""
    held: list[socket.socket] = []
    try:
        for _ in range(_KERNEL_PICK_ATTEMPTS):
            try:
                sock = _bind(protocol, where, 0, server_options=False)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:  # the whole ephemeral range is busy
                    break
                raise _bind_error(exc, protocol, where, 0) from None
            if sock.getsockname()[1] not in excluded:
                return sock
            held.append(sock)  # keep it bound so the kernel picks another one next time
    finally:
        for sock in held:
            sock.close()
    raise NoFreePort(
        f"the kernel found no free {protocol} port outside the excluded ones on {where.label};"
        " pass port_range= to search elsewhere"
    )


def _take_from_range(
    protocol: Protocol, where: _Where, ports: range, excluded: frozenset[int]
) -> socket.socket:
    """Try the range from a random start (so parallel searches rarely collide), skipping
    the kernel's reserved ports and ``excluded``."""
    try:
        reserved = port_ranges().reserved
    except ParseError:
        reserved = frozenset()
    start = random.randrange(len(ports))
    busy = skipped = denied = 0
    for i in range(len(ports)):
        port = ports[(start + i) % len(ports)]
        if port in excluded or port in reserved:
            skipped += 1
            continue
        try:
            return _bind(protocol, where, port, server_options=False)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                busy += 1
            elif exc.errno in (errno.EACCES, errno.EPERM):
                denied += 1
            else:
                raise _bind_error(exc, protocol, where, port) from None
    span = f"{ports[0]}-{ports[-1]}" if ports.step == 1 else str(ports)
    raise NoFreePort(
        f"no free {protocol} port in {span} on {where.label}: {busy} in use,"
        f" {skipped} reserved or excluded, {denied} need root or CAP_NET_BIND_SERVICE"
    )


def reserve_port(
    protocol: Protocol | str = "tcp",
    host: Host = "127.0.0.1",
    *,
    port: int = 0,
    port_range: range | str | None = None,
    exclude: Iterable[int] = (),
) -> socket.socket:
    """A socket bound to a free port, held so nobody else can take it. Close it when done.

    Which port: ``port`` itself when given (NoFreePort if it is in use); else one
    from ``port_range`` (a ``range`` or ``"FIRST-LAST"``), searched from a random
    start, skipping the kernel's reserved ports and ``exclude``; else the kernel's
    choice from the ephemeral range. ``host`` is an IP address of this machine or
    None for all interfaces of both families. The socket has no SO_REUSEADDR, so
    no other socket can bind the port while it is open; ``listen()`` on it (TCP) or
    pass it to ``asyncio.start_server(sock=...)`` / ``loop.create_datagram_endpoint
    (sock=...)`` to serve on the port without a race.

    Example:

    >>> import portlib
    >>> sock = portlib.reserve_port()  # doctest: +SKIP
    >>> sock.getsockname()  # doctest: +SKIP
    ('127.0.0.1', 38407)
    >>> sock.listen()  # doctest: +SKIP
    """
    proto = as_protocol(protocol)
    where = _where(host)
    excluded = _excluded(exclude)
    if port:
        port = check_port(port, lowest=1)
        if port_range is not None:
            raise PortSpecError("give either port= or port_range=, not both")
        try:
            return _bind(proto, where, port, server_options=False)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise NoFreePort(f"port {port}/{proto} is in use on {where.label}") from None
            raise _bind_error(exc, proto, where, port) from None
    check_port(port)  # rejects non-integers given as port=
    if port_range is None:
        return _take_kernel_pick(proto, where, excluded)
    return _take_from_range(proto, where, _port_range(port_range), excluded)


def find_free_port(
    protocol: Protocol | str = "tcp",
    host: Host = "127.0.0.1",
    *,
    port_range: range | str | None = None,
    exclude: Iterable[int] = (),
) -> int:
    """A port free on ``host`` right now (the kernel's choice unless ``port_range`` is given).

    Someone may take it before you bind it; when that matters use
    :func:`reserve_port`, which hands over the bound socket. Arguments as for
    :func:`reserve_port`; NoFreePort when every candidate is busy, reserved or excluded.

    Example:

    >>> import portlib
    >>> portlib.find_free_port()  # doctest: +SKIP
    40421
    >>> portlib.find_free_port(port_range="8000-8099")  # doctest: +SKIP
    8050
    """
    with reserve_port(protocol, host, port_range=port_range, exclude=exclude) as sock:
        port: int = sock.getsockname()[1]
    return port


__all__ = [
    "DEFAULT_UNPRIVILEGED_START",
    "find_free_port",
    "is_port_free",
    "parse_local_port_range",
    "parse_reserved_ports",
    "parse_unprivileged_start",
    "port_ranges",
    "reserve_port",
]
