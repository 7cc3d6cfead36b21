"""This machine's sockets and who holds them: what ``ss``, ``lsof -i`` and ``fuser -k`` answer.

    >>> import portlib
    >>> [str(s.local) for s in portlib.listening("tcp")]            # doctest: +SKIP
    ['0.0.0.0:22', '127.0.0.1:8000']
    >>> portlib.who_uses(8000)[0].owners[0].name                    # doctest: +SKIP
    'python3'

TCP and UDP tables come from netlink ``sock_diag`` (what ``ss`` reads) when
``procfs`` is the real ``/proc``, else, and whenever netlink cannot answer,
from ``/proc/net/*`` text. Owners come from ``/proc/<pid>/fd``; that walk runs
in a thread while the table is read, since it spends its time in the kernel.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType

from portlib.errors import (
    NoSuchProcess,
    ParseError,
    PermissionDenied,
    PortNotInUse,
    PrivilegeError,
    SocketQueryError,
)
from portlib.model import Family, Process, Protocol, Socket, SocketState, UnixSocket
from portlib.socktable import owners as _owners
from portlib.socktable import procnet, sockdiag

__all__ = [
    "SocketQueryError",
    "kill_port",
    "listening",
    "ports_of",
    "sockets",
    "who_uses",
]

AnySocket = Socket | UnixSocket
Table = tuple[Protocol, Family]


_TCP4, _TCP6 = (Protocol.TCP, Family.INET), (Protocol.TCP, Family.INET6)
_UDP4, _UDP6 = (Protocol.UDP, Family.INET), (Protocol.UDP, Family.INET6)
_RAW4, _RAW6 = (Protocol.RAW, Family.INET), (Protocol.RAW, Family.INET6)

# kind -> (inet tables to read, whether to read unix sockets); the words of `ss -A/-f`.
KINDS: Mapping[str, tuple[tuple[Table, ...], bool]] = MappingProxyType(
    {
        "inet": ((_TCP4, _TCP6, _UDP4, _UDP6, _RAW4, _RAW6), False),
        "inet4": ((_TCP4, _UDP4, _RAW4), False),
        "inet6": ((_TCP6, _UDP6, _RAW6), False),
        "tcp": ((_TCP4, _TCP6), False),
        "tcp4": ((_TCP4,), False),
        "tcp6": ((_TCP6,), False),
        "udp": ((_UDP4, _UDP6), False),
        "udp4": ((_UDP4,), False),
        "udp6": ((_UDP6,), False),
        "raw": ((_RAW4, _RAW6), False),
        "unix": ((), True),
        "all": ((_TCP4, _TCP6, _UDP4, _UDP6, _RAW4, _RAW6), True),
    }
)

# What `ss -l` shows: listening TCP sockets and bound, unconnected datagram ones.
LISTENING_STATES = frozenset({SocketState.LISTEN, SocketState.CLOSE})

_PROTOCOLS: Mapping[str, Protocol] = MappingProxyType({p.value: p for p in Protocol})
_STATE_NAMES: Mapping[str, SocketState] = MappingProxyType(
    {s.value.lower(): s for s in SocketState}
    | {s.name.lower(): s for s in SocketState}
    | {s.name.lower().replace("_", "-"): s for s in SocketState}
)
REAL_PROCFS = "/proc"


# -- argument checks --------------------------------------------------------------------------


def _check_kind(kind: str) -> tuple[tuple[Table, ...], bool]:
    found = KINDS.get(kind.lower()) if isinstance(kind, str) else None
    if found is None:
        raise SocketQueryError(f"unknown socket kind {kind!r}: use one of {', '.join(KINDS)}")
    return found


def _check_state(state: SocketState | str | None) -> SocketState | None:
    if state is None or isinstance(state, SocketState):
        return state
    found = _STATE_NAMES.get(state.lower()) if isinstance(state, str) else None
    if found is None:
        names = ", ".join(s.value for s in SocketState)
        raise SocketQueryError(f"unknown socket state {state!r}: use one of {names}")
    return found


def _check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise SocketQueryError(f"port must be an integer in 0-65535, not {port!r}")
    return port


def _check_protocol(protocol: Protocol | str) -> Protocol:
    found = _PROTOCOLS.get(protocol.lower()) if isinstance(protocol, str) else None
    if found is None:
        raise SocketQueryError(f"unknown protocol {protocol!r}: use tcp, udp or raw")
    return found


def check_signal(sig: signal.Signals | int | str) -> signal.Signals:
    try:
        if isinstance(sig, str):
            name = sig.upper()
            return signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
        if isinstance(sig, bool):
            raise ValueError(sig)
        return signal.Signals(sig)
    except (KeyError, ValueError):
        raise SocketQueryError(
            f"unknown signal {sig!r}: use a name like TERM, KILL or HUP, or a number"
        ) from None


# -- reading the tables -----------------------------------------------------------------------


def _read_text(path: str) -> str | None:
    """A /proc/net file's text, or None when the kernel lacks it (no IPv6, say)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise ParseError(f"cannot read: {exc.strerror}", source=path) from None


def read_inet_table(
    protocol: Protocol,
    family: Family,
    procfs: str = REAL_PROCFS,
    *,
    backend: str = "auto",
    local_port: int | None = None,
) -> list[Socket]:
    """One kernel table; ``backend`` is ``auto`` (netlink for /proc), ``netlink`` or ``procfs``."""
    if backend != "procfs" and procfs == REAL_PROCFS and protocol in sockdiag.IPPROTO_BY_PROTOCOL:
        try:
            return sockdiag.dump(protocol, family, local_port=local_port)
        except OSError:
            if backend == "netlink":
                raise
    path = f"{procfs}/net/{procnet.INET_TABLE_FILES[(protocol, family)]}"
    text = _read_text(path)
    if text is None:
        return []
    found = procnet.parse_inet_table(text, protocol, family, source=path)
    return found if local_port is None else [s for s in found if s.local.port == local_port]


def read_unix_table(procfs: str = REAL_PROCFS) -> list[UnixSocket]:
    path = f"{procfs}/net/unix"
    text = _read_text(path)
    return [] if text is None else procnet.parse_unix_table(text, source=path)


def _read_tables(
    tables: Iterable[Table], unix: bool, procfs: str, local_port: int | None = None
) -> list[AnySocket]:
    found: list[AnySocket] = []
    for protocol, family in tables:
        found.extend(read_inet_table(protocol, family, procfs, local_port=local_port))
    if unix:
        found.extend(read_unix_table(procfs))
    return found


def _attach(found: list[AnySocket], owners: Mapping[int, tuple[Process, ...]]) -> None:
    """Fill ``owners`` of sockets built in this call, before anyone else can see them.

    They are frozen; setting the field on objects this call just made (as
    ``__post_init__`` would) saves rebuilding tens of thousands of them.
    """
    if not owners:
        return
    for sock in found:
        held = owners.get(sock.inode) if sock.inode else None
        if held:
            object.__setattr__(sock, "owners", held)


def _query(
    kind: str,
    *,
    keep: Callable[[AnySocket], bool] | None,
    processes: bool,
    procfs: str,
) -> list[AnySocket]:
    tables, unix = _check_kind(kind)
    return query_tables(tables, unix, keep=keep, processes=processes, procfs=procfs)


def query_tables(
    tables: Iterable[Table],
    unix: bool,
    *,
    keep: Callable[[AnySocket], bool] | None = None,
    processes: bool = True,
    procfs: str = REAL_PROCFS,
    local_port: int | None = None,
) -> list[AnySocket]:
    """Read several tables at once (``ss -tu``), keep what ``keep`` accepts, add owners.

    ``local_port`` narrows the inet tables in the kernel already (and drops unix sockets).
    """
    if local_port is not None:
        unix = False
    with _gc_paused():
        return _query_tables(tables, unix, keep, processes, procfs, local_port)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Tens of thousands of new, acyclic objects would set off collections for nothing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _query_tables(
    tables: Iterable[Table],
    unix: bool,
    keep: Callable[[AnySocket], bool] | None,
    processes: bool,
    procfs: str,
    local_port: int | None,
) -> list[AnySocket]:
    if not processes:
        found = _read_tables(tables, unix, procfs, local_port)
        return found if keep is None else [s for s in found if keep(s)]
    # A kernel-filtered query decodes few sockets, so the helper takes less of the walk.
    with _owners.OwnerWalk(procfs, table_sockets=0 if local_port is not None else None) as walk:
        found = _read_tables(tables, unix, procfs, local_port)
        if keep is not None:
            found = [s for s in found if keep(s)]
        holders = walk.join(wanted={s.inode for s in found if s.inode})
    if holders:
        _attach(found, _owners.ProcessReader(procfs).owners(holders))
    return found


# -- public functions -------------------------------------------------------------------------


def sockets(
    kind: str = "inet",
    *,
    state: SocketState | str | None = None,
    port: int | None = None,
    processes: bool = True,
    procfs: str = REAL_PROCFS,
) -> list[Socket | UnixSocket]:
    """Every socket of ``kind`` (``ss -a``), optionally only in ``state`` or on ``port``.

    ``kind`` is one of inet, inet4, inet6, tcp, tcp4, tcp6, udp, udp4, udp6,
    raw, unix, all. ``port`` matches the local or the remote port (unix
    sockets have none, so a port filter drops them). With ``processes`` each
    socket's ``owners`` lists every (process, fd) holding it that this user
    may see; without, ``/proc/<pid>`` is not read at all.

    Example:

    >>> import portlib
    >>> [str(s.local) for s in portlib.sockets("tcp", state="LISTEN")]  # doctest: +SKIP
    ['127.0.0.1:8000', '0.0.0.0:2024']
    """
    want_state = _check_state(state)
    want_port = None if port is None else _check_port(port)
    keep: Callable[[AnySocket], bool] | None = None
    if want_state is not None or want_port is not None:

        def keep(s: AnySocket) -> bool:
            if want_state is not None and s.state is not want_state:
                return False
            if want_port is None:
                return True
            return isinstance(s, Socket) and want_port in (s.local.port, s.remote.port)

    return _query(kind, keep=keep, processes=processes, procfs=procfs)


def listening(
    kind: str = "inet", *, processes: bool = True, procfs: str = REAL_PROCFS
) -> list[Socket | UnixSocket]:
    """What ``ss -l`` shows: listening TCP sockets and bound, unconnected UDP/raw ones.

    Example:

    >>> import portlib
    >>> tcp = portlib.listening("tcp")  # doctest: +SKIP
    >>> [(str(s.local), s.owners[0].name) for s in tcp if s.owners]  # doctest: +SKIP
    [('127.0.0.1:8000', 'python')]
    """
    return _query(
        kind, keep=lambda s: s.state in LISTENING_STATES, processes=processes, procfs=procfs
    )


def who_uses(
    port: int, protocol: Protocol | str = "tcp", *, procfs: str = REAL_PROCFS
) -> list[Socket]:
    """Sockets whose local port is ``port`` (IPv4 and IPv6), with their owners: ``lsof -i :PORT``.

    Sockets nobody holds (TIME-WAIT, or owners this user may not see) come with no owners.

    Example:

    >>> import portlib
    >>> found = portlib.who_uses(8000)  # doctest: +SKIP
    >>> [(s.state.value, [p.pid for p in s.owners]) for s in found]  # doctest: +SKIP
    [('LISTEN', [24092])]
    """
    want_port = _check_port(port)
    proto = _check_protocol(protocol)
    tables, _ = KINDS[proto.value]
    found = query_tables(tables, False, local_port=want_port, procfs=procfs)
    return [s for s in found if isinstance(s, Socket) and s.local.port == want_port]


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
    found = [s for s in _read_tables(tables, False, procfs) if s.inode in holders]
    _attach(found, reader.owners(holders))
    return [s for s in found if isinstance(s, Socket)]


def kill_port(
    port: int,
    protocol: Protocol | str = "tcp",
    sig: signal.Signals | int | str = signal.SIGTERM,
    *,
    procfs: str = REAL_PROCFS,
) -> list[Process]:
    """Signal every process holding local ``port`` (``fuser -k PORT/tcp``); return whom it hit.

    Refuses, signalling no one, when PID 1 or this very process holds the
    port. Raises PortNotInUse when no socket has that local port,
    PrivilegeError when sockets have it but this user cannot see their owners.
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
    proto = _check_protocol(protocol)
    found = who_uses(port, proto, procfs=procfs)
    by_pid: dict[int, Process] = {}
    for sock in found:
        for owner in sock.owners:
            by_pid.setdefault(owner.pid, owner)
    if not by_pid:
        if any(s.inode for s in found):
            raise PrivilegeError(
                f"port {port}/{proto} is in use, but this user cannot see by whom (run as root)"
            )
        raise PortNotInUse(
            f"no process holds port {port}/{proto}, so there is nothing to stop "
            f"(portlib.listening() lists the ports in use)"
        )
    for refused, why in ((1, "PID 1 (init)"), (os.getpid(), "this process itself")):
        if refused in by_pid:
            raise PermissionDenied(
                refused, f"refusing to signal {why}, which holds port {port}/{proto}"
            )
    signalled: list[Process] = []
    for target in by_pid.values():
        try:
            os.kill(target.pid, signum)
        except ProcessLookupError:
            continue
        except PermissionError:
            raise PermissionDenied(
                target.pid, f"not permitted to signal PID {target.pid} ({target.name})"
            ) from None
        signalled.append(target)
    return signalled
