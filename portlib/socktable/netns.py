"""Read another network namespace's sockets: ``ss -N NAME``.

Socket tables belong to a network namespace. ``setns(2)`` moves only the
calling thread, so the tables are read inside :func:`entered` on this thread
and the thread is moved back afterwards; a sock_diag socket opened inside
keeps answering for that namespace. ``/proc/net`` follows the process's first
thread, so inside, the ``/proc`` fallback reads ``/proc/thread-self/net``.
Process owners need no switch: ``/proc/<pid>/fd`` covers every namespace and
socket inodes are unique across them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from collections.abc import Callable, Iterator

from portlib.errors import PrivilegeError, SocketQueryError

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"  # where `ip netns add` puts its names
THREAD_NET = "/proc/thread-self/net"


def namespace_path(name: str) -> str:
    """``ip netns``'s file for ``name``; a path (with a ``/``) is taken as it is."""
    if not isinstance(name, str) or not name or name in (".", ".."):
        raise SocketQueryError(f"bad network namespace name {name!r}")
    return name if "/" in name else f"{NETNS_DIR}/{name}"


def _libc_setns() -> Callable[[int, int], None]:
    libc = ctypes.CDLL(None, use_errno=True)

    def setns(fd: int, nstype: int) -> None:
        if libc.setns(fd, nstype) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    return setns


def _setns() -> Callable[[int, int], None]:
    found: Callable[[int, int], None] | None = getattr(os, "setns", None)  # Python 3.12+
    return found if found is not None else _libc_setns()


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the block with this thread in network namespace ``name`` (``ip netns`` name or path).

    Raises SocketQueryError for a namespace that does not exist and
    PrivilegeError when this process may not enter it (it needs CAP_SYS_ADMIN).
    """
    path = namespace_path(name)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SocketQueryError(f"no network namespace {name!r} ({path} does not exist)") from None
    except PermissionError:
        raise PrivilegeError(f"not permitted to open network namespace {name!r}") from None
    setns = _setns()
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                setns(target, CLONE_NEWNET)
            except OSError as exc:
                if exc.errno == errno.EPERM:
                    raise PrivilegeError(
                        f"entering network namespace {name!r} needs root (CAP_SYS_ADMIN)"
                    ) from None
                raise SocketQueryError(
                    f"{path} is not a network namespace: {exc.strerror}"
                ) from None
            try:
                yield
            finally:
                setns(home, CLONE_NEWNET)
        finally:
            os.close(home)
    finally:
        os.close(target)


__all__ = ["THREAD_NET", "entered", "namespace_path"]
