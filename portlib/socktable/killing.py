"""Signal the processes holding some sockets, safely: ``fuser -k``, but through pidfds.

Between finding a holder and signalling it, the holder may exit and its PID be
given to an unrelated process. So each holder is opened as a pidfd
(``pidfd_open``), then checked to still hold one of the sockets, and only then
signalled through the pidfd, which can only reach the process it was opened on.
PID 1, this process and its ancestors are never signalled. With ``wait`` the
holders get that long to exit; survivors get SIGKILL, and the sockets are read
again: if anyone still holds them (a survivor, or a holder this user cannot
see) :class:`PortStillHeld` says who.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Callable, Sequence

from portlib.errors import PermissionDenied, PortlibError, PortNotInUse, PrivilegeError
from portlib.model import Process, Socket
from portlib.socktable import fdwalk
from portlib.socktable.owners import parse_status_ppid

KILL_WAIT_S = 1.0  # how long a SIGKILLed survivor gets to go before the sockets are re-read


class PortStillHeld(PortlibError):
    """After the signals (and the wait), someone still holds the sockets.

    ``signalled`` lists whom the call signalled, ``remaining`` the visible
    processes still holding the sockets, ``hidden`` how many of the sockets have
    holders this user cannot see.
    """

    def __init__(
        self,
        message: str,
        *,
        signalled: Sequence[Process],
        remaining: Sequence[Process],
        hidden: int,
    ) -> None:
        super().__init__(message)
        self.signalled = tuple(signalled)
        self.remaining = tuple(remaining)
        self.hidden = hidden


def hidden_holders_text(count: int) -> str:
    """Why some sockets show no holder: to root that is not a matter of rights."""
    sockets = f"{count} socket{'s' if count != 1 else ''}"
    if os.geteuid() == 0:
        return (
            f"{sockets} held by no process visible here (a kernel socket, one in flight "
            "between processes, or one in another PID namespace)"
        )
    return f"{sockets} whose holders this user cannot see (run as root to see them)"


def ancestors(procfs: str = "/proc", pid: int | None = None) -> list[int]:
    """The parent, grandparent, ... of ``pid`` (default this process), up to PID 1."""
    found: list[int] = []
    current = os.getpid() if pid is None else pid
    while current > 1 and len(found) < 4096:
        try:
            with open(f"{procfs}/{current}/status", encoding="utf-8", errors="replace") as f:
                parent = parse_status_ppid(f.read())
        except OSError:
            break
        if parent is None or parent <= 0:
            break
        found.append(parent)
        current = parent
    return found


def refused(procfs: str = "/proc") -> dict[int, str]:
    """PID -> why it is never signalled: init, this process and every ancestor of it."""
    why = {1: "PID 1 (init)", os.getpid(): "this process itself"}
    for pid in ancestors(procfs):
        why.setdefault(pid, f"PID {pid}, an ancestor of this process")
    return why


def holds(procfs: str, pid: int, inodes: frozenset[int]) -> bool:
    """Whether process ``pid`` holds one of the socket ``inodes`` right now."""
    holders: fdwalk.Holders = {}
    try:
        fdwalk.scan_fd_dir(procfs, pid, holders, inodes)
    except (OSError, ValueError):
        return False
    return bool(holders)


def _open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid``; None when it is gone. Raises OSError when pidfds are missing."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def _wait_exits(pidfds: dict[int, int], seconds: float) -> set[int]:
    """Wait up to ``seconds`` for the processes behind ``pidfds`` (pid -> fd) to exit.

    Returns the PIDs still running. A pidfd becomes readable when its process ends.
    """
    poller = select.poll()
    pid_of = {}
    for pid, fd in pidfds.items():
        poller.register(fd, select.POLLIN)
        pid_of[fd] = pid
    running = set(pidfds)
    deadline = time.monotonic() + seconds
    while running:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for fd, _ in poller.poll(left * 1000):
            running.discard(pid_of[fd])
            poller.unregister(fd)
    return running


def signal_holders(
    found: Sequence[Socket],
    signum: signal.Signals,
    *,
    what: str,
    wait: float | None = None,
    reread: Callable[[], Sequence[Socket]] | None = None,
    escalated: Callable[[Process], None] | None = None,
    procfs: str = "/proc",
) -> list[Process]:
    """Signal every visible holder of ``found``; ``what`` names the sockets in messages.

    ``escalated`` is told of each holder that got SIGKILL after the wait.

    Raises PortNotInUse when the sockets have no holder at all, PrivilegeError
    when holders exist but none is visible, PermissionDenied (signalling no one)
    when a refused process holds them or a holder may not be signalled, and
    PortStillHeld when hidden holders remain or, with ``wait``, ``reread()``
    still finds holders after the survivors got SIGKILL.
    """
    holders: dict[int, tuple[Process, set[int]]] = {}
    for sock in found:
        for owner in sock.owners:
            holders.setdefault(owner.pid, (owner, set()))[1].add(sock.inode)
    hidden = sum(1 for s in found if s.inode and not s.owners)
    if not holders:
        if hidden:
            raise PrivilegeError(f"{what} is in use: {hidden_holders_text(hidden)}")
        raise PortNotInUse(
            f"no process holds {what}, so there is nothing to stop "
            f"(portlib.listening() lists the ports in use)"
        )
    for pid, why in refused(procfs).items():
        if pid in holders:
            raise PermissionDenied(pid, f"refusing to signal {why}, which holds {what}")
    signalled: list[Process] = []
    pidfds: dict[int, int] = {}
    try:
        for process, inodes in holders.values():
            if _signal_one(procfs, process, frozenset(inodes), signum, pidfds):
                signalled.append(process)
        if wait is None and not hidden:
            return signalled
        remaining = (
            _wait_and_escalate(procfs, holders, pidfds, wait, escalated) if wait is not None else []
        )
    finally:
        for fd in pidfds.values():
            os.close(fd)
    if wait is not None and reread is not None:
        again = reread()
        hidden = sum(1 for s in again if s.inode and not s.owners)
        seen = {o.pid: o for s in again for o in s.owners}
        remaining = list(seen.values())
    if remaining or hidden:
        raise PortStillHeld(
            _still_held_text(what, remaining, hidden),
            signalled=signalled,
            remaining=remaining,
            hidden=hidden,
        )
    return signalled


def _signal_one(
    procfs: str,
    process: Process,
    inodes: frozenset[int],
    signum: signal.Signals,
    pidfds: dict[int, int],
) -> bool:
    """Signal ``process`` if it still holds one of ``inodes``; False if it is gone."""
    try:
        pidfd = _open_pidfd(process.pid)
    except OSError:  # no pidfds (Linux < 5.3): check, then signal by PID
        pidfd = None
        if not holds(procfs, process.pid, inodes):
            return False
        return _send(lambda: os.kill(process.pid, signum), process)
    if pidfd is None:
        return False
    pidfds[process.pid] = pidfd
    if not holds(procfs, process.pid, inodes):  # exited, and its PID maybe reused
        return False
    return _send(lambda: signal.pidfd_send_signal(pidfd, signum), process)


def _send(action: Callable[[], None], process: Process) -> bool:
    try:
        action()
    except ProcessLookupError:
        return False
    except PermissionError:
        raise PermissionDenied(
            process.pid, f"not permitted to signal PID {process.pid} ({process.name})"
        ) from None
    return True


def _wait_and_escalate(
    procfs: str,
    holders: dict[int, tuple[Process, set[int]]],
    pidfds: dict[int, int],
    wait: float,
    escalated: Callable[[Process], None] | None,
) -> list[Process]:
    """Give the signalled processes ``wait`` seconds; SIGKILL the survivors that still hold."""
    survivors = _wait_exits(pidfds, wait)
    killed = {}
    for pid in survivors:
        process, inodes = holders[pid]
        if holds(procfs, pid, frozenset(inodes)):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfds[pid], signal.SIGKILL)
                killed[pid] = pidfds[pid]
                if escalated is not None:
                    escalated(process)
    still = _wait_exits(killed, KILL_WAIT_S) if killed else set()
    return [holders[pid][0] for pid in still]


def _still_held_text(what: str, remaining: Sequence[Process], hidden: int) -> str:
    parts = [f"PID {p.pid} ({p.name})" for p in remaining]
    if hidden:
        parts.append(hidden_holders_text(hidden))
    return f"{what} is still held: by {', '.join(parts)}"


__all__ = ["PortStillHeld", "ancestors", "refused", "signal_holders"]
