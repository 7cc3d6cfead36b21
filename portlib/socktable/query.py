"""Read socket tables, filtered, with their owners: the machinery behind ``sockets()``.

TCP and UDP tables come from netlink ``sock_diag`` (what ``ss`` reads) when
``procfs`` is the real ``/proc``, with the filter's states and bytecode sent
along so the kernel does the filtering; otherwise, and whenever netlink cannot
answer, from ``/proc/net/*`` text filtered in Python by the same rules. Owners
come from ``/proc/<pid>/fd``; for big tables that walk runs in a helper process
while the table is read (owners.py).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from portlib.errors import ParseError
from portlib.model import Family, Process, Protocol, Socket, UnixSocket
from portlib.socktable import diagext, netns, procnet, sockdiag
from portlib.socktable import owners as _owners
from portlib.socktable.bytecode import bytecode_attribute, state_mask
from portlib.socktable.filters import SocketFilter, predicate

AnySocket = Socket | UnixSocket
Table = tuple[Protocol, Family]
REAL_PROCFS = "/proc"


@dataclass(frozen=True, slots=True)
class Extras:
    """What a listing adds to each socket: ``ss -e`` (cookie), ``-o``, ``-i``, ``-m``."""

    extended: bool = False
    timers: bool = False
    tcp_info: bool = False
    memory: bool = False

    @property
    def ext(self) -> int:
        """The ``idiag_ext`` bits to ask the kernel for."""
        return (diagext.EXT_TCP_INFO if self.tcp_info else 0) | (
            diagext.EXT_MEMORY if self.memory else 0
        )

    @property
    def wanted(self) -> bool:
        return self.extended or self.timers or self.tcp_info or self.memory


NO_EXTRAS = Extras()


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    """One filter in both forms: for the kernel (state mask, bytecode) and for Python."""

    states: int
    bytecode: bytes
    keep: Callable[[AnySocket], bool] | None

    @classmethod
    def of(cls, socket_filter: SocketFilter | None) -> CompiledFilter:
        if socket_filter is None:
            return cls(sockdiag.ALL_STATES, b"", None)
        states = socket_filter.states
        mask = sockdiag.ALL_STATES if states is None else state_mask(states)
        expression = socket_filter.expression
        bytecode = b"" if expression is None else bytecode_attribute(expression)
        return cls(mask, bytecode, predicate(socket_filter))


NO_FILTER = CompiledFilter.of(None)


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
    family: Family | None,
    procfs: str = REAL_PROCFS,
    *,
    backend: str = "auto",
    compiled: CompiledFilter = NO_FILTER,
    extras: Extras = NO_EXTRAS,
    net_dir: str | None = None,
) -> list[Socket]:
    """One kernel table; ``backend`` is ``auto`` (netlink for /proc), ``netlink`` or ``procfs``.

    ``family=None`` reads TCP's IPv4 and IPv6 tables together (one kernel walk).
    ``net_dir`` is where the ``/proc`` fallback reads (default ``PROCFS/net``).
    """
    if backend != "procfs" and procfs == REAL_PROCFS and protocol in sockdiag.IPPROTO_BY_PROTOCOL:
        if not compiled.states:
            return []
        try:
            return sockdiag.dump(
                protocol,
                family,
                states=compiled.states,
                bytecode=compiled.bytecode,
                ext=extras.ext,
                detailed=extras.wanted,
                timers=extras.timers,
            )
        except OSError:
            if backend == "netlink":
                raise
    if family is None:
        return [
            sock
            for one in (Family.INET, Family.INET6)
            for sock in read_inet_table(
                protocol, one, procfs, backend="procfs", compiled=compiled, net_dir=net_dir
            )
        ]
    path = f"{net_dir or procfs + '/net'}/{procnet.INET_TABLE_FILES[(protocol, family)]}"
    text = _read_text(path)
    if text is None:
        return []
    found = procnet.parse_inet_table(text, protocol, family, source=path)
    keep = compiled.keep
    return found if keep is None else [s for s in found if keep(s)]


def read_unix_table(
    procfs: str = REAL_PROCFS, *, compiled: CompiledFilter = NO_FILTER, net_dir: str | None = None
) -> list[UnixSocket]:
    path = f"{net_dir or procfs + '/net'}/unix"
    text = _read_text(path)
    found = [] if text is None else procnet.parse_unix_table(text, source=path)
    keep = compiled.keep
    return found if keep is None else [s for s in found if keep(s)]


def read_tables(
    plan: Iterable[tuple[Table, CompiledFilter]],
    unix: CompiledFilter | None,
    procfs: str = REAL_PROCFS,
    *,
    extras: Extras = NO_EXTRAS,
    namespace: str | None = None,
) -> list[AnySocket]:
    """Each (table, filter) of ``plan`` in order, then unix sockets (unless ``unix`` is None)."""
    with netns.entered(namespace) if namespace else contextlib.nullcontext():
        net_dir = netns.THREAD_NET if namespace else None
        found: list[AnySocket] = []
        for (protocol, family), compiled in _joined_tcp(list(plan)):
            found.extend(
                read_inet_table(
                    protocol, family, procfs, compiled=compiled, extras=extras, net_dir=net_dir
                )
            )
        if unix is not None:
            found.extend(read_unix_table(procfs, compiled=unix, net_dir=net_dir))
    return found


_TCP4, _TCP6 = (Protocol.TCP, Family.INET), (Protocol.TCP, Family.INET6)


def _joined_tcp(
    plan: list[tuple[Table, CompiledFilter]],
) -> list[tuple[tuple[Protocol, Family | None], CompiledFilter]]:
    """The plan with TCP's two tables made one read when they share a filter (as ss does)."""
    filters = dict(plan)
    if _TCP4 not in filters or filters.get(_TCP6) is not filters[_TCP4]:
        return list(plan)
    joined: list[tuple[tuple[Protocol, Family | None], CompiledFilter]] = []
    for table, compiled in plan:
        if table == _TCP4:
            joined.append(((Protocol.TCP, None), compiled))
        elif table != _TCP6:
            joined.append((table, compiled))
    return joined


def attach(found: list[AnySocket], owners: Mapping[int, tuple[Process, ...]]) -> None:
    """Fill ``owners`` of sockets built in this call, before anyone else can see them.

    They are frozen; setting the field on objects this call just made (as
    ``__post_init__`` would) saves rebuilding tens of thousands of them.
    """
    if not owners:
        return
    get = owners.get
    for sock in found:
        held = get(sock.inode) if sock.inode else None
        if held:
            object.__setattr__(sock, "owners", held)


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


def query_tables(
    tables: Iterable[Table],
    unix: bool,
    *,
    socket_filter: SocketFilter | Mapping[Table, SocketFilter] | None = None,
    keep: Callable[[AnySocket], bool] | None = None,
    processes: bool = True,
    procfs: str = REAL_PROCFS,
    extras: Extras = NO_EXTRAS,
    namespace: str | None = None,
    expect_few: bool = False,
) -> list[AnySocket]:
    """Read several tables at once (``ss -tu``), filtered, and add owners.

    ``socket_filter`` is one filter for every table or one per table (tables
    without one are skipped; so are unix sockets); the kernel applies it where it
    can. ``keep`` is any further test in Python. ``expect_few`` says the filter
    keeps a handful of sockets (a port lookup), which shifts the owner walk onto
    this process.
    """
    if isinstance(socket_filter, Mapping):
        per_table = {t: CompiledFilter.of(f) for t, f in socket_filter.items()}
        plan = [(t, per_table[t]) for t in tables if t in per_table]
        unix_filter = None
    else:
        compiled = CompiledFilter.of(socket_filter)
        plan = [(t, compiled) for t in tables]
        unix_filter = compiled if unix else None
    with _gc_paused():
        if not processes:
            found = read_tables(plan, unix_filter, procfs, extras=extras, namespace=namespace)
            return found if keep is None else [s for s in found if keep(s)]
        with _owners.OwnerWalk(procfs, table_sockets=0 if expect_few else None) as walk:
            found = read_tables(plan, unix_filter, procfs, extras=extras, namespace=namespace)
            if keep is not None:
                found = [s for s in found if keep(s)]
            owners = walk.owners(_owners.ProcessReader(procfs), {s.inode for s in found if s.inode})
        attach(found, owners)
        return found


__all__ = [
    "NO_EXTRAS",
    "REAL_PROCFS",
    "CompiledFilter",
    "Extras",
    "attach",
    "query_tables",
    "read_inet_table",
    "read_tables",
    "read_unix_table",
]
