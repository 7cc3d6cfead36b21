"""This machine's sockets and who holds them: what ``ss``, ``lsof -i`` and ``fuser -k`` answer.

    >>> import portlib
    >>> [str(s.local) for s in portlib.listening("tcp")]            # doctest: +SKIP
    ['0.0.0.0:22', '127.0.0.1:8000']
    >>> portlib.who_uses(8000)[0].owners[0].name                    # doctest: +SKIP
    'python3'
    >>> portlib.sockets("tcp", filter="state established dport = :443")   # doctest: +SKIP
    [Socket(protocol=<Protocol.TCP: 'tcp'>, ...)]

Tables are read by query.py (netlink ``sock_diag`` with kernel-side filters,
``/proc/net`` as the fallback); filters are ss's language (filterparse.py,
filters.py); owners come from ``/proc/<pid>/fd`` (owners.py).
"""

from __future__ import annotations

import signal
from typing import Literal, TypedDict, Unpack, overload

from portlib.errors import NoSuchProcess, SocketQueryError
from portlib.model import Family, Process, Protocol, Socket, SocketState, UnixSocket
from portlib.socktable import owners as _owners
from portlib.socktable import whoselect
from portlib.socktable.arguments import (
    KINDS,
    InetKind,
    check_kind,
    check_port,
    check_protocol,
    check_signal,
    combined_filter,
    parse_socket_filter,
)
from portlib.socktable.destroy import DestroyUnsupported, destroy_plan
from portlib.socktable.filterparse import FilterSyntaxError
from portlib.socktable.filters import LISTENING_STATES, SocketFilter
from portlib.socktable.killing import PortStillHeld, signal_holders
from portlib.socktable.query import (
    NO_FILTER,
    REAL_PROCFS,
    CompiledFilter,
    Extras,
    attach,
    query_tables,
    read_inet_table,
    read_tables,
    read_unix_table,
)
from portlib.socktable.summary import SocketSummary, socket_summary

__all__ = [
    "KINDS",
    "DestroyUnsupported",
    "FilterSyntaxError",
    "PortStillHeld",
    "SocketQueryError",
    "SocketSummary",
    "check_signal",
    "destroy_sockets",
    "kill_port",
    "listening",
    "parse_socket_filter",
    "ports_of",
    "read_inet_table",
    "read_unix_table",
    "select_sockets",
    "socket_summary",
    "sockets",
    "who_uses",
]

# -- public functions -------------------------------------------------------------------------


class SocketOptions(TypedDict, total=False):
    """The keyword arguments of :func:`sockets` (for its typed overloads)."""

    filter: str | SocketFilter | None
    state: SocketState | str | None
    port: int | None
    processes: bool
    extended: bool
    timers: bool
    tcp_info: bool
    memory: bool
    netns: str | None
    procfs: str


@overload
def sockets(kind: InetKind = "inet", **options: Unpack[SocketOptions]) -> list[Socket]: ...
@overload
def sockets(kind: Literal["unix"], **options: Unpack[SocketOptions]) -> list[UnixSocket]: ...
@overload
def sockets(kind: str, **options: Unpack[SocketOptions]) -> list[Socket | UnixSocket]: ...


def sockets(
    kind: str = "inet",
    *,
    filter: str | SocketFilter | None = None,
    state: SocketState | str | None = None,
    port: int | None = None,
    processes: bool = True,
    extended: bool = False,
    timers: bool = False,
    tcp_info: bool = False,
    memory: bool = False,
    netns: str | None = None,
    procfs: str = REAL_PROCFS,
) -> list[Socket] | list[UnixSocket] | list[Socket | UnixSocket]:
    """Every socket of ``kind`` (``ss -a``) that passes ``filter``, with its owners.

    ``kind`` is one of inet, inet4, inet6, tcp, tcp4, tcp6, udp, udp4, udp6,
    raw, unix, all. ``filter`` is ss's filter language
    (``"state established ( dport = :443 or dport = :80 )"``) or a SocketFilter
    built with :mod:`portlib.socktable.filters`; the kernel applies it. ``state``
    keeps one state; ``port`` matches the local or the remote port (unix
    sockets have none, so a port filter drops them). With ``processes`` each
    socket's ``owners`` lists every (process, fd) holding it that this user
    may see; without, ``/proc/<pid>`` is not read at all. ``extended`` (the
    cookie: ``ss -e``), ``timers`` (``-o``), ``tcp_info`` (``-i``) and
    ``memory`` (``-m``) fill each socket's ``details``. ``netns`` reads another
    network namespace (an ``ip netns`` name or a path; ``ss -N``).

    Example:

    >>> import portlib
    >>> [str(s.local) for s in portlib.sockets("tcp", state="LISTEN")]  # doctest: +SKIP
    ['127.0.0.1:8000', '0.0.0.0:2024']
    >>> found = portlib.sockets("tcp", filter="dport = :443", tcp_info=True)  # doctest: +SKIP
    >>> found[0].details.tcp.rtt_us, found[0].details.tcp.congestion  # doctest: +SKIP
    (21435, 'cubic')
    """
    tables, unix = check_kind(kind)
    socket_filter = combined_filter(filter, state, port)
    extras = Extras(extended, timers, tcp_info, memory)
    return query_tables(
        tables,
        unix and port is None,
        socket_filter=socket_filter,
        processes=processes,
        procfs=procfs,
        extras=extras,
        namespace=netns,
    )


class ListeningOptions(TypedDict, total=False):
    """The keyword arguments of :func:`listening`."""

    processes: bool
    netns: str | None
    procfs: str


@overload
def listening(kind: InetKind = "inet", **options: Unpack[ListeningOptions]) -> list[Socket]: ...
@overload
def listening(kind: Literal["unix"], **options: Unpack[ListeningOptions]) -> list[UnixSocket]: ...
@overload
def listening(kind: str, **options: Unpack[ListeningOptions]) -> list[Socket | UnixSocket]: ...


def listening(
    kind: str = "inet",
    *,
    processes: bool = True,
    netns: str | None = None,
    procfs: str = REAL_PROCFS,
) -> list[Socket] | list[UnixSocket] | list[Socket | UnixSocket]:
    """What ``ss -l`` shows: listening TCP sockets and bound, unconnected UDP/raw ones.

    Example:

    >>> import portlib
    >>> tcp = portlib.listening("tcp")  # doctest: +SKIP
    >>> [(str(s.local), s.owners[0].name) for s in tcp if s.owners]  # doctest: +SKIP
    [('127.0.0.1:8000', 'python')]
    """
    tables, unix = check_kind(kind)
    return query_tables(
        tables,
        unix,
        socket_filter=SocketFilter(states=LISTENING_STATES),
        processes=processes,
        procfs=procfs,
        namespace=netns,
    )


def who_uses(
    port: int | None = None,
    protocol: Protocol | str | None = None,
    *,
    address: str | None = None,
    local: bool = False,
    procfs: str = REAL_PROCFS,
) -> list[Socket]:
    """Sockets with ``port`` (and/or ``address``) at either end, with their owners: ``lsof -i``.

    Like ``lsof -i :PORT``, both TCP and UDP unless ``protocol`` is given, and
    both ends of a connection: a client connected to the port is listed too.
    ``local=True`` looks at the local end only (``fuser PORT/tcp``). Sockets
    nobody holds (TIME-WAIT, or owners this user may not see) come with no owners.

    Example:

    >>> import portlib
    >>> found = portlib.who_uses(8000, "tcp")  # doctest: +SKIP
    >>> [(s.state.value, [p.pid for p in s.owners]) for s in found]  # doctest: +SKIP
    [('LISTEN', [24092]), ('ESTAB', [24101])]
    """
    if port is None and address is None:
        raise SocketQueryError("who_uses() needs a port, an address, or both")
    proto = None if protocol is None else check_protocol(protocol)
    if proto is Protocol.RAW:
        raise SocketQueryError("who_uses() looks at TCP and UDP sockets; raw ones have no ports")
    ports = None if port is None else (check_port(port),) * 2
    found = None if address is None else whoselect.parse_address(address)
    family = None if found is None else (Family.INET if found.version == 4 else Family.INET6)
    selector = whoselect.Selector(proto, family, found, ports)
    return select_sockets([selector], local=local, procfs=procfs)


def select_sockets(
    selectors: list[whoselect.Selector],
    states: whoselect.StateSelection = whoselect.StateSelection(),  # noqa: B008 (frozen)
    *,
    local: bool = False,
    families: tuple[Family, ...] = (Family.INET, Family.INET6),
    procfs: str = REAL_PROCFS,
) -> list[Socket]:
    """The TCP/UDP sockets lsof-style ``selectors`` pick, with their owners."""
    filters = whoselect.table_filters(selectors, states, local_only=local, families=families)
    found = query_tables(
        whoselect.INET_TABLES, False, socket_filter=filters, procfs=procfs, expect_few=True
    )
    return [s for s in found if isinstance(s, Socket)]


def ports_of(
    *, pid: int | None = None, name: str | None = None, procfs: str = REAL_PROCFS
) -> list[Socket]:
    """The internet sockets one process (``pid``) or every process called ``name`` holds.

    ``name`` matches the kernel's process name (``comm``) or the base name of
    the program. Owners list only the matching processes. For ``pid``, a
    missing process raises NoSuchProcess and an unreadable one
    PermissionDenied; for ``name``, no match gives an empty list.

    Example:

    >>> import portlib
    >>> [str(s.local) for s in portlib.ports_of(pid=24092)]  # doctest: +SKIP
    ['127.0.0.1:8000']
    >>> [str(s.local) for s in portlib.ports_of(name="sshd")]  # doctest: +SKIP
    ['0.0.0.0:22', '[::]:22']
    """
    if (pid is None) == (name is None):
        raise SocketQueryError("ports_of() needs exactly one of pid= or name=")
    reader = _owners.ProcessReader(procfs)
    if pid is not None:
        holders = _owners.fds_of_pid(procfs, pid)
        if reader.info(pid) is None:
            raise NoSuchProcess(pid, f"PID {pid} exited while it was being read")
    else:
        if not isinstance(name, str) or not name:
            raise SocketQueryError(f"process name must be a non-empty string, not {name!r}")
        pids = [p for p in _owners.list_pids(procfs) if reader.matches_name(p, name)]
        holders = _owners.socket_holders(procfs, pids=pids)
    tables, _ = KINDS["inet"]
    plan = [(table, NO_FILTER) for table in tables]
    found = [s for s in read_tables(plan, None, procfs) if s.inode in holders]
    attach(found, reader.owners(holders))
    return [s for s in found if isinstance(s, Socket)]


def kill_port(
    port: int,
    protocol: Protocol | str = "tcp",
    sig: signal.Signals | int | str = signal.SIGTERM,
    *,
    wait: float | None = None,
    procfs: str = REAL_PROCFS,
) -> list[Process]:
    """Signal every process holding local ``port`` (``fuser -k PORT/tcp``); return whom it hit.

    Each holder is signalled through a pidfd after checking it still holds the
    socket, so a PID reused meanwhile is never hit. Refuses, signalling no one,
    when PID 1, this process or one of its ancestors holds the port. Raises
    PortNotInUse when no socket has that local port, PrivilegeError when
    sockets have it but this user cannot see their owners. With ``wait``
    (seconds) holders that are still there afterwards get SIGKILL; if the port
    is still held then, or (with or without ``wait``) by owners this user cannot
    see, PortStillHeld says by whom (its ``signalled`` lists whom this call hit).
    One Process per PID is returned, in the order they were signalled;
    processes that exited meanwhile are left out.

    Example:

    >>> import portlib
    >>> [(p.pid, p.name) for p in portlib.kill_port(8123)]  # doctest: +SKIP
    [(28896, 'python')]
    >>> portlib.kill_port(8123, sig="KILL")  # doctest: +SKIP
    Traceback (most recent call last):
    portlib.errors.PortNotInUse: no process holds port 8123/tcp, ...
    """
    signum = check_signal(sig)
    proto = check_protocol(protocol)
    want_port = check_port(port)
    if wait is not None and (isinstance(wait, bool) or not wait >= 0):
        raise SocketQueryError(f"wait must be a number of seconds, 0 or more, not {wait!r}")
    selector = whoselect.Selector(proto, ports=(want_port, want_port))

    def holders() -> list[Socket]:
        return select_sockets([selector], local=True, procfs=procfs)

    return signal_holders(
        holders(), signum, what=f"port {port}/{proto}", wait=wait, reread=holders, procfs=procfs
    )


def destroy_sockets(
    kind: str = "tcp", *, filter: str | SocketFilter, netns: str | None = None
) -> list[Socket]:
    """Close the TCP/UDP sockets of ``kind`` that ``filter`` selects: ``ss -K FILTER``.

    The kernel aborts each one (a TCP peer gets a reset; the owner sees
    ECONNABORTED) and the destroyed sockets are returned. ``filter`` is
    required and must test addresses or ports: closing every socket of a kind
    is never what was meant. Needs root (CAP_NET_ADMIN); raises
    DestroyUnsupported on kernels built without CONFIG_INET_DIAG_DESTROY.

    Example:

    >>> import portlib
    >>> portlib.destroy_sockets("tcp", filter="dst 192.0.2.7 dport = :443")  # doctest: +SKIP
    [Socket(protocol=<Protocol.TCP: 'tcp'>, ... state=<SocketState.ESTABLISHED: 'ESTAB'>, ...)]
    """
    tables, _ = check_kind(kind)
    socket_filter = combined_filter(filter)
    if socket_filter is None or socket_filter.expression is None:
        raise SocketQueryError(
            "destroy_sockets() needs a filter that names addresses or ports "
            "(e.g. 'dport = :443'); without one it would close every socket"
        )
    compiled = CompiledFilter.of(socket_filter)
    return destroy_plan([(t, compiled) for t in tables], namespace=netns)
