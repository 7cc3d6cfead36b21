"""The ``/proc/<pid>/fd`` walk, standard library only, so it can also run as its own process.

Finding a socket's owners costs one ``readlink`` per open descriptor on the
machine, almost all of it kernel time. With tens of thousands of sockets that
walk and decoding the socket table each take tens of milliseconds, and a
thread cannot overlap them (the walker would wait for the GIL after every
``readlink``). So for big tables :mod:`portlib.socktable.owners` runs this file
as a script in a second interpreter (``python -I -S fdwalk.py PROCFS``), which
writes ``(inode, pid, fd)`` triples as native 64-bit integers to stdout, while
the caller reads the table. It imports nothing from portlib: under ``-I -S``
the package may not even be on the path.
"""

from __future__ import annotations

import os
import sys
from array import array
from collections.abc import Collection

SOCKET_PREFIX = "socket:["
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
RECORD_TYPECODE = "q"  # inode, pid, fd: three signed 64-bit native integers per socket fd

Holders = dict[int, list[tuple[int, int]]]
# A share of the walk: (pid, first fd, end fd) with the end excluded. A big process
# is split by fd number between two walkers; each number belongs to one of them.
Share = tuple[int, int, int]
FD_END = 1 << 31


def scan_fd_dir(
    procfs: str,
    pid: int,
    holders: Holders,
    wanted: Collection[int] | None = None,
    first: int = 0,
    end: int = FD_END,
) -> None:
    """Add ``pid``'s socket fds in ``[first, end)`` to ``holders``; OSError if unreadable."""
    dir_fd = os.open(f"{procfs}/{pid}/fd", DIR_FLAGS)
    whole = first == 0 and end >= FD_END
    try:
        readlink = os.readlink
        for name in os.listdir(dir_fd):
            if not whole and not (name.isdigit() and first <= int(name) < end):
                continue
            try:
                link = readlink(name, dir_fd=dir_fd)
            except OSError:  # the fd was closed since the listing
                continue
            if link.startswith(SOCKET_PREFIX):
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


def numeric_entries(procfs: str) -> list[int]:
    """The PIDs under ``procfs`` (its numeric directory names)."""
    try:
        names = os.listdir(procfs)
    except OSError:
        return []
    return [int(name) for name in names if name.isdigit()]


def walk(procfs: str, shares: list[Share] | None = None, *, skip: int | None = None) -> array[int]:
    """Socket fds of ``shares`` (default: every readable process) as (inode, pid, fd) records."""
    records: array[int] = array(RECORD_TYPECODE)
    if shares is None:
        shares = [(pid, 0, FD_END) for pid in numeric_entries(procfs)]
    for pid, first, end in shares:
        if pid == skip:
            continue
        holders: Holders = {}
        try:
            scan_fd_dir(procfs, pid, holders, None, first, end)
        except (OSError, ValueError):  # vanished or forbidden: no owner, no error
            continue
        for inode, pairs in holders.items():
            for _, fd in pairs:
                records.extend((inode, pid, fd))
    return records


def records_of(data: bytes) -> array[int]:
    """The child's output as its flat (inode, pid, fd, inode, pid, fd, ...) integers."""
    records: array[int] = array(RECORD_TYPECODE)
    records.frombytes(data)
    return records


def decode_records(data: bytes, wanted: Collection[int] | None = None) -> Holders:
    """Turn the child's output back into inode -> [(pid, fd), ...], keeping ``wanted`` inodes."""
    records = records_of(data)
    holders: Holders = {}
    it = iter(records)
    for inode, pid, fd in zip(it, it, it, strict=True):
        if wanted is not None and inode not in wanted:
            continue
        entry = holders.get(inode)
        if entry is None:
            holders[inode] = [(pid, fd)]
        else:
            entry.append((pid, fd))
    return holders


def parse_share(text: str) -> Share:
    """``PID`` (the whole process) or ``PID:FIRST:END`` (its fds FIRST <= fd < END)."""
    parts = text.split(":")
    if len(parts) not in (1, 3) or not all(p.isdigit() for p in parts):
        raise ValueError(text)
    if len(parts) == 1:
        return int(parts[0]), 0, FD_END
    return int(parts[0]), int(parts[1]), int(parts[2])


def share_text(share: Share) -> str:
    pid, first, end = share
    return str(pid) if first == 0 and end >= FD_END else f"{pid}:{first}:{end}"


def main(argv: list[str]) -> int:
    try:
        shares = [parse_share(a) for a in argv[2:]] or None
    except ValueError:
        shares = None
        argv = []
    if len(argv) < 2:
        print("usage: fdwalk.py PROCFS [PID | PID:FIRST:END ...]", file=sys.stderr)
        return 2
    # Skip this helper itself: it holds nothing of its own but may have inherited fds.
    data = memoryview(walk(argv[1], shares, skip=os.getpid()).tobytes())
    while data:
        data = data[os.write(1, data) :]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
