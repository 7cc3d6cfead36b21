"""Who holds a socket: socket inode -> every (pid, fd), through ``/proc/<pid>/fd`` links.

Each open socket shows up as a link ``/proc/<pid>/fd/<n> -> socket:[<inode>]``.
One ``readlink`` per descriptor is the whole cost, so the walk reads each fd
directory through a directory descriptor (short kernel path lookups) and
reads a process's name, command line and user only for processes that hold a
socket the caller asked about. Processes that exit mid-walk, and ones a
non-root caller may not look into, are skipped without a word: a listing then
shows those sockets without owners. Only :func:`fds_of_pid`, which answers a
question about one process, reports those cases as errors.
"""

from __future__ import annotations

import os
import pwd
import signal
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence

from portlib.errors import NoSuchProcess, PermissionDenied
from portlib.model import Process
from portlib.socktable import fdwalk
from portlib.socktable.construct import fast_constructor

_new_process = fast_constructor(Process)


def _pid_and_fd(process: Process) -> tuple[int, int]:
    return process.pid, process.fd


# inode -> [(pid, fd), ...]: a forked server shares one socket between processes.
Holders = fdwalk.Holders
_SOCKET_PREFIX = fdwalk.SOCKET_PREFIX


def socket_inode(link: str) -> int | None:
    """The inode in a ``socket:[12345]`` link target, or None for any other file."""
    if link.startswith(_SOCKET_PREFIX) and link.endswith("]"):
        digits = link[len(_SOCKET_PREFIX) : -1]
        if digits.isascii() and digits.isdigit():
            return int(digits)
    return None


def parse_cmdline(raw: bytes) -> tuple[str, ...]:
    """``/proc/<pid>/cmdline``: NUL-separated arguments (kernel threads have none)."""
    text = raw.decode("utf-8", "surrogateescape")
    return tuple(text.rstrip("\0").split("\0")) if text.strip("\0") else ()


def _status_number(text: str, key: str, column: int) -> int | None:
    for line in text.splitlines():
        if line.startswith(key):
            fields = line.split()
            if len(fields) > column and fields[column].isdigit():
                return int(fields[column])
            return None
    return None


def parse_status_uid(text: str) -> int | None:
    """The effective uid from ``/proc/<pid>/status`` (the ``Uid:`` line's second field)."""
    return _status_number(text, "Uid:", 2)


def parse_status_ppid(text: str) -> int | None:
    """The parent's PID from ``/proc/<pid>/status`` (the ``PPid:`` line)."""
    return _status_number(text, "PPid:", 1)


def list_pids(procfs: str = "/proc") -> list[int]:
    """Every process id under ``procfs`` (numeric directory names)."""
    return fdwalk.numeric_entries(procfs)


def socket_holders(
    procfs: str = "/proc",
    *,
    pids: Iterable[int] | None = None,
    wanted: Collection[int] | None = None,
    shares: Iterable[fdwalk.Share] | None = None,
) -> Holders:
    """Map socket inodes to every (pid, fd) holding them, skipping unreadable processes.

    ``pids`` limits the walk to those processes (``shares`` to parts of them);
    ``wanted`` keeps only those inodes.
    """
    if shares is None:
        shares = [(pid, 0, fdwalk.FD_END) for pid in (list_pids(procfs) if pids is None else pids)]
    holders: Holders = {}
    for pid, first, end in shares:
        try:
            fdwalk.scan_fd_dir(procfs, pid, holders, wanted, first, end)
        except (OSError, ValueError):  # vanished, forbidden, or not a process directory
            continue
    return holders


def fds_of_pid(procfs: str, pid: int) -> Holders:
    """The socket fds of one process; raises NoSuchProcess or PermissionDenied."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise NoSuchProcess(pid if isinstance(pid, int) else -1, f"{pid!r} is not a process id")
    holders: Holders = {}
    try:
        fdwalk.scan_fd_dir(procfs, pid, holders)
    except FileNotFoundError:
        raise NoSuchProcess(pid) from None
    except ProcessLookupError:
        raise NoSuchProcess(pid) from None
    except PermissionError:
        raise PermissionDenied(
            pid, f"not permitted to read the open files of PID {pid} (run as root?)"
        ) from None
    except OSError as exc:
        raise NoSuchProcess(
            pid, f"cannot read the open files of PID {pid}: {exc.strerror}"
        ) from None
    return holders


class ProcessInfo:
    """What is known of a process apart from one descriptor (internal; a plain class
    because a dataclass costs a millisecond or two of import time on the CLI's path)."""

    __slots__ = ("cmdline", "name", "user")

    def __init__(self, name: str, cmdline: tuple[str, ...], user: str | None) -> None:
        self.name = name
        self.cmdline = cmdline
        self.user = user


class ProcessReader:
    """Reads name, command line and user of processes once each, caching uid -> user name."""

    def __init__(self, procfs: str = "/proc") -> None:
        self.procfs = procfs
        self._info: dict[int, ProcessInfo | None] = {}
        self._users: dict[int, str | None] = {}

    def info(self, pid: int) -> ProcessInfo | None:
        """The process's details, or None if it vanished or may not be read."""
        if pid in self._info:
            return self._info[pid]
        base = f"{self.procfs}/{pid}"
        try:
            with open(f"{base}/comm", "rb") as f:
                name = f.read().decode("utf-8", "replace").rstrip("\n")
            with open(f"{base}/cmdline", "rb") as f:
                cmdline = parse_cmdline(f.read())
            with open(f"{base}/status", encoding="utf-8", errors="replace") as f:
                uid = parse_status_uid(f.read())
        except OSError:
            info = None
        else:
            info = ProcessInfo(name, cmdline, None if uid is None else self.user(uid))
        self._info[pid] = info
        return info

    def user(self, uid: int) -> str | None:
        if uid not in self._users:
            try:
                self._users[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self._users[uid] = None
        return self._users[uid]

    def owners(
        self,
        holders: Mapping[int, list[tuple[int, int]]],
        records: Sequence[int] = (),
        wanted: Collection[int] | None = None,
    ) -> dict[int, tuple[Process, ...]]:
        """Turn (pid, fd) pairs into Process values; processes that vanished are left out.

        ``records`` adds the walk helper's (inode, pid, fd) triples of ``wanted``
        inodes, read straight from its output rather than through a Holders map.
        """
        result: dict[int, tuple[Process, ...]] = {}
        known = self._info
        new_process = _new_process
        for inode, pairs in holders.items():
            if len(pairs) == 1:  # the usual case, kept cheap for tables of 10,000s
                pid, fd = pairs[0]
                details = known[pid] if pid in known else self.info(pid)
                if details is not None:
                    result[inode] = (
                        new_process(pid, details.name, details.cmdline, details.user, fd),
                    )
                continue
            procs = []
            for pid, fd in sorted(pairs):  # the same order whichever walker found them
                details = self.info(pid)
                if details is not None:
                    procs.append(Process(pid, details.name, details.cmdline, details.user, fd))
            if procs:
                result[inode] = tuple(procs)
        if records:
            self._add_records(result, records, wanted)
        return result

    def _add_records(
        self,
        result: dict[int, tuple[Process, ...]],
        records: Sequence[int],
        wanted: Collection[int] | None,
    ) -> None:
        known = self._info
        new_process = _new_process
        it = iter(records)
        for inode, pid, fd in zip(it, it, it, strict=True):
            if wanted is not None and inode not in wanted:
                continue
            details = known[pid] if pid in known else self.info(pid)
            if details is None:
                continue
            process = new_process(pid, details.name, details.cmdline, details.user, fd)
            held = result.get(inode)
            if held is None:
                result[inode] = (process,)
            else:  # a shared socket: keep the order the in-process walk gives
                result[inode] = tuple(sorted((*held, process), key=_pid_and_fd))

    def matches_name(self, pid: int, name: str) -> bool:
        """Whether the process is called ``name`` (its comm, or its program's base name)."""
        details = self.info(pid)
        if details is None:
            return False
        if details.name == name:
            return True
        return bool(details.cmdline) and os.path.basename(details.cmdline[0]) == name


# Below this many sockets the walk takes a few milliseconds, less than starting
# a helper interpreter; above it the helper's parallel walk saves more than it costs.
CHILD_WALK_MIN_SOCKETS = 3000
_RECORD_SIZE = 3 * 8
# Rough costs (microseconds) for splitting the walk between the helper and the caller.
HELPER_START_US = 15_000  # starting `python -I -S fdwalk.py`
READLINK_US = 5  # one descriptor
DECODE_US = 2.5  # one socket of the table the caller decodes and builds meanwhile


def sockets_in_use(procfs: str = "/proc") -> int:
    """The kernel's count of open sockets (``/proc/net/sockstat``), 0 when unknown."""
    try:
        with open(f"{procfs}/net/sockstat", "rb") as f:
            first = f.readline().split()
    except OSError:
        return 0
    # b"sockets: used 20018"
    return int(first[2]) if len(first) >= 3 and first[2].isdigit() else 0


def fd_counts(procfs: str = "/proc") -> dict[int, int]:
    """PID -> open descriptors; Linux 6.2+ reports the count as the fd directory's size."""
    counts = {}
    for pid in list_pids(procfs):
        try:
            counts[pid] = os.stat(f"{procfs}/{pid}/fd").st_size
        except OSError:
            continue
    return counts


def plan_split(
    fds: Mapping[int, int], caller_busy_us: float
) -> tuple[list[fdwalk.Share], list[fdwalk.Share]]:
    """Share the walk between (caller, helper) so both finish about together.

    The caller starts after its own table work, the helper after its start-up;
    the helper takes the biggest processes until its part is full, and the
    process that crosses that line is cut by fd number (a server holding most
    sockets is the usual case, and splitting only whole processes could not
    balance it). Without counts (older kernels report 0) the helper takes all.
    """
    end = fdwalk.FD_END
    if not any(fds.values()):
        return [], [(pid, 0, end) for pid in fds]
    total = sum(fds.values()) * READLINK_US
    finish = (total + caller_busy_us + HELPER_START_US) / 2
    budget = max(0, round((finish - HELPER_START_US) / READLINK_US))  # fds for the helper
    caller: list[fdwalk.Share] = []
    helper: list[fdwalk.Share] = []
    for pid in sorted(fds, key=fds.__getitem__, reverse=True):
        count = fds[pid]
        if budget >= count:
            helper.append((pid, 0, end))
            budget -= count
        elif budget > 0:  # fds are numbered densely from 0 in most processes
            helper.append((pid, 0, budget))
            caller.append((pid, budget, end))
            budget = 0
        else:
            caller.append((pid, 0, end))
    return caller, helper


class OwnerWalk:
    """The owners walk for one query, started before the socket table is read.

    With a big table on the real ``/proc`` the processes are shared between a
    helper interpreter (see :mod:`portlib.socktable.fdwalk`), which starts
    walking at once, and the caller, which walks its share in :meth:`join`
    after reading the table. Otherwise, or if the helper cannot start or
    fails, :meth:`join` walks everything in-process. Use as a context manager
    so the helper never outlives the query. ``table_sockets`` is how many
    sockets the caller will decode meanwhile (default: all in use).
    """

    def __init__(
        self, procfs: str = "/proc", *, helper: bool | None = None, table_sockets: int | None = None
    ) -> None:
        self.procfs = procfs
        self._pid: int | None = None
        self._read_fd: int | None = None
        self._mine: list[fdwalk.Share] | None = None  # the caller's share when a helper runs
        auto = helper is None
        used = sockets_in_use(procfs) if auto or table_sockets is None else 0
        if auto:
            helper = procfs == "/proc" and used >= CHILD_WALK_MIN_SOCKETS
        if not helper:
            return
        if auto or table_sockets is not None:
            busy = (used if table_sockets is None else table_sockets) * DECODE_US
            mine, theirs = plan_split(fd_counts(procfs), busy)
        else:  # helper=True and nothing to balance against: the helper walks everything
            mine, theirs = [], [(pid, 0, fdwalk.FD_END) for pid in list_pids(procfs)]
        if theirs:
            self._spawn(theirs)
        if self._pid is not None:
            self._mine = mine

    @property
    def in_helper(self) -> bool:
        return self._pid is not None

    def _spawn(self, shares: list[fdwalk.Share]) -> None:
        script = fdwalk.__file__
        if not sys.executable or not script or not os.path.isfile(script):
            return
        read_fd, write_fd = os.pipe()
        actions = [
            (os.POSIX_SPAWN_DUP2, write_fd, 1),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
        ]
        try:
            # -I -S: no site-packages, no environment knobs; the script needs only the stdlib.
            argv = [sys.executable, "-I", "-S", script, self.procfs]
            argv += [fdwalk.share_text(share) for share in shares]
            self._pid = os.posix_spawn(sys.executable, argv, os.environ, file_actions=actions)
        except OSError:
            os.close(read_fd)
            return
        finally:
            os.close(write_fd)
        self._read_fd = read_fd

    def owners(
        self, reader: ProcessReader, wanted: Collection[int]
    ) -> dict[int, tuple[Process, ...]]:
        """The owners of the ``wanted`` inodes, as Process values (:meth:`join`, then
        :meth:`ProcessReader.owners`, without building the helper's part as a map)."""
        if self._pid is None:
            return reader.owners(socket_holders(self.procfs, wanted=wanted))
        mine = socket_holders(self.procfs, shares=self._mine or [], wanted=wanted)
        data = self._collect()
        if data is None:  # the helper failed: walk everything here
            return reader.owners(socket_holders(self.procfs, wanted=wanted))
        return reader.owners(mine, fdwalk.records_of(data), wanted)

    def join(self, wanted: Collection[int] | None = None) -> Holders:
        """Every holder of the ``wanted`` inodes (all sockets when None)."""
        if self._pid is None:
            return socket_holders(self.procfs, wanted=wanted)
        # Walk our share first, while the helper is still busy with its own.
        mine = socket_holders(self.procfs, shares=self._mine or [], wanted=wanted)
        data = self._collect()
        if data is None:  # the helper failed: walk everything here
            return socket_holders(self.procfs, wanted=wanted)
        holders = fdwalk.decode_records(data, wanted)
        for inode, pairs in mine.items():
            holders.setdefault(inode, []).extend(pairs)
        return holders

    def _collect(self) -> bytes | None:
        """The helper's whole output, or None if it failed."""
        assert self._read_fd is not None and self._pid is not None
        chunks = []
        try:
            while chunk := os.read(self._read_fd, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(self._read_fd)
            self._read_fd = None
        try:
            _, status = os.waitpid(self._pid, 0)
            succeeded = os.waitstatus_to_exitcode(status) == 0
        except ChildProcessError:  # the application reaps children itself (SIGCHLD ignored...)
            succeeded = True  # the pipe reached EOF; the length check below still applies
        self._pid = None
        data = b"".join(chunks)
        if not succeeded or len(data) % _RECORD_SIZE:
            return None
        return data

    def close(self) -> None:
        """Stop and reap the helper if the query ended early (an exception, Ctrl-C)."""
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None
        if self._pid is not None:
            try:
                os.kill(self._pid, signal.SIGKILL)
                os.waitpid(self._pid, 0)
            except OSError:
                pass
            self._pid = None

    def __enter__(self) -> OwnerWalk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
