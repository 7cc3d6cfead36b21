"""Socket events from successive looks at a table: what opened, what changed, what closed.

A :class:`Tracker` keeps the last look (each socket keyed by the kernel's cookie
where known, else by its endpoints and inode) and turns the next look, or a
kernel "destroyed" notice, into :class:`SocketEvent` values. Sockets that were
there at the first look raise no event; TIME-WAIT and half-open (SYN-RECV)
sockets never "open" (they are what is left of, or not yet, a connection); a
connection that enters TIME-WAIT, or is destroyed, closes once, whichever way
it is noticed first. Pure: no I/O, the time is passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from portlib.model import Socket, SocketState

S = SocketState
_NEVER_OPEN = frozenset({S.TIME_WAIT, S.SYN_RECV, S.NEW_SYN_RECV})
_CLOSED_STATES = frozenset({S.TIME_WAIT})
_REMEMBERED_CLOSES = 1 << 16  # bounded: a long watch of a busy host closes millions


class SocketEventKind(StrEnum):
    """What happened to a socket."""

    OPENED = "opened"
    STATE = "state"  # changed state (``previous`` says from which)
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class SocketEvent:
    """One change. ``socket`` is the socket as last seen, with its owners when known
    (a closed socket's owners are those of its last sighting). ``time`` is when it
    was noticed (seconds since the epoch).

    Example:

    >>> import asyncio, portlib
    >>> async def first_close():
    ...     async for event in portlib.watch_sockets("tcp", filter="dport = :443"):
    ...         if event.kind == "closed":
    ...             return event
    >>> event = asyncio.run(first_close())  # doctest: +SKIP
    >>> event.kind, str(event.socket.remote), event.socket.owners[0].name  # doctest: +SKIP
    (<SocketEventKind.CLOSED: 'closed'>, '192.0.2.7:443', 'curl')
    """

    kind: SocketEventKind
    socket: Socket
    time: float
    previous: SocketState | None = None


def identity(sock: Socket) -> Hashable:
    """A socket's key across looks: its cookie, else its endpoints and inode."""
    if sock.details is not None and sock.details.cookie is not None:
        return sock.details.cookie
    return (sock.protocol, sock.family, sock.local, sock.remote, sock.inode)


class Tracker:
    """The last look at a table, and the events the next one brings."""

    def __init__(self, first: Iterable[Socket]) -> None:
        self.known: dict[Hashable, Socket] = {identity(s): s for s in first}
        self._closed: dict[Hashable, None] = {}  # keys already reported closed, oldest first

    def _close(self, key: Hashable) -> bool:
        """Mark ``key`` closed; False if it was already."""
        if key in self._closed:
            return False
        self._closed[key] = None
        if len(self._closed) > _REMEMBERED_CLOSES:
            del self._closed[next(iter(self._closed))]
        return True

    def look(self, current: Iterable[Socket], now: float) -> list[SocketEvent]:
        """Events between the last look and ``current``, which becomes the last look."""
        events: list[SocketEvent] = []
        seen: dict[Hashable, Socket] = {}
        for sock in current:
            key = identity(sock)
            before = self.known.get(key)
            # A closing socket loses its fd before it leaves the table: keep its owners.
            seen[key] = sock if before is None else _owned(sock, before)
            if before is None:
                if sock.state not in _NEVER_OPEN:
                    events.append(SocketEvent(SocketEventKind.OPENED, sock, now))
            elif before.state is not sock.state:
                if sock.state in _CLOSED_STATES:
                    if self._close(key):
                        events.append(
                            SocketEvent(SocketEventKind.CLOSED, _owned(sock, before), now)
                        )
                elif key not in self._closed:
                    kind = SocketEventKind.STATE
                    events.append(SocketEvent(kind, _owned(sock, before), now, before.state))
        for key, before in self.known.items():
            if key not in seen and before.state not in _CLOSED_STATES and self._close(key):
                events.append(SocketEvent(SocketEventKind.CLOSED, before, now))
        self.known = seen
        return events

    def destroyed(
        self, sock: Socket, now: float, wanted: Callable[[Socket], bool]
    ) -> SocketEvent | None:
        """The event for the kernel's notice that ``sock`` was destroyed, if it is news.

        A socket seen before is reported as it was last seen (state and owners: the
        notice gives the state at destruction and no owner); one never seen is
        reported as the notice has it, when ``wanted`` accepts it.
        """
        key = identity(sock)
        before = self.known.get(key)
        if before is None and not wanted(sock):
            return None
        if not self._close(key):
            return None
        return SocketEvent(SocketEventKind.CLOSED, sock if before is None else before, now)


def _owned(sock: Socket, before: Socket) -> Socket:
    """``sock``, with ``before``'s owners if it came without any (a closing socket's fd is gone)."""
    if sock.owners or not before.owners:
        return sock
    return replace(sock, owners=before.owners)


__all__ = ["SocketEvent", "SocketEventKind", "Tracker", "identity"]
