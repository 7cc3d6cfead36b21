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
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from portlib.errors import NoSuchProcess, PermissionDenied
from portlib.model import Process

# inode -> [(pid, fd), ...]: a forked server shares one socket between processes.
Holders = dict[int, list[tuple[int, int]]]

_SOCKET_PREFIX = "socket:["
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)


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


def parse_status_uid(text: str) -> int | None:
    """The effective uid from ``/proc/<pid>/status`` (the ``Uid:`` line's second field)."""
    for line in text.splitlines():
        if line.startswith("Uid:"):
            fields = line.split()
            if len(fields) >= 3 and fields[2].isdigit():
                return int(fields[2])
            return None
    return None


def list_pids(procfs: str = "/proc") -> list[int]:
    """Every process id under ``procfs`` (numeric directory names)."""
    try:
        names = os.listdir(procfs)
    except OSError:
        return []
    return [int(name) for name in names if name.isdigit()]


def _scan_fd_dir(procfs: str, pid: int, holders: Holders, wanted: Collection[int] | None) -> None:
    """Add this pid's socket fds to ``holders``; raises OSError if the directory cannot be read."""
    dir_fd = os.open(f"{procfs}/{pid}/fd", _DIR_FLAGS)
    try:
        readlink = os.readlink
        for name in os.listdir(dir_fd):
            try:
                link = readlink(name, dir_fd=dir_fd)
            except OSError:  # the fd was closed since the listing
                continue
            if link.startswith(_SOCKET_PREFIX):
                try:
                    inode = int(link[8:-1])
                    fd = int(name)
                except ValueError:  # not a kernel-made link (a fixture tree, say)
                    continue
                if wanted is None or inode in wanted:
                    entry = holders.get(inode)
                    if entry is None:
                        holders[inode] = [(pid, fd)]
                    else:
                        entry.append((pid, fd))
    finally:
        os.close(dir_fd)


def socket_holders(
    procfs: str = "/proc",
    *,
    pids: Iterable[int] | None = None,
    wanted: Collection[int] | None = None,
) -> Holders:
    """Map socket inodes to every (pid, fd) holding them, skipping unreadable processes.

    ``pids`` limits the walk to those processes; ``wanted`` keeps only those inodes.
    """
    holders: Holders = {}
    for pid in list_pids(procfs) if pids is None else pids:
        try:
            _scan_fd_dir(procfs, pid, holders, wanted)
        except (OSError, ValueError):  # vanished, forbidden, or not a process directory
            continue
    return holders


def fds_of_pid(procfs: str, pid: int) -> Holders:
    """The socket fds of one process; raises NoSuchProcess or PermissionDenied."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise NoSuchProcess(pid if isinstance(pid, int) else -1, f"{pid!r} is not a process id")
    holders: Holders = {}
    try:
        _scan_fd_dir(procfs, pid, holders, None)
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


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """What is known of a process apart from one descriptor."""

    name: str
    cmdline: tuple[str, ...]
    user: str | None


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
        self, holders: Mapping[int, list[tuple[int, int]]]
    ) -> dict[int, tuple[Process, ...]]:
        """Turn (pid, fd) pairs into Process values; processes that vanished are left out."""
        result: dict[int, tuple[Process, ...]] = {}
        info = self.info
        for inode, pairs in holders.items():
            procs = []
            for pid, fd in pairs:
                details = info(pid)
                if details is not None:
                    procs.append(Process(pid, details.name, details.cmdline, details.user, fd))
            if procs:
                result[inode] = tuple(procs)
        return result

    def matches_name(self, pid: int, name: str) -> bool:
        """Whether the process is called ``name`` (its comm, or its program's base name)."""
        details = self.info(pid)
        if details is None:
            return False
        if details.name == name:
            return True
        return bool(details.cmdline) and os.path.basename(details.cmdline[0]) == name
