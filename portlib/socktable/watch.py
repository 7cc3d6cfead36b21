"""``portlib.watch_sockets()``: socket events as they happen (``ss -E``; listeners coming, going).

Two sources feed one :class:`~portlib.socktable.sockevents.Tracker`:

- the kernel's sock_diag multicast groups (``SKNLGRP_INET_TCP_DESTROY`` and the
  UDP and IPv6 ones), which announce every TCP/UDP socket as it is destroyed,
  at once, whatever happens between looks;
- a look at the table every ``interval`` seconds, in a worker thread, for
  sockets that appear or change state (the kernel announces nothing for those),
  and for all changes where the groups cannot be joined.

The first look sets the baseline: sockets already there raise no event.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable

from portlib.errors import SocketQueryError
from portlib.model import Family, Protocol, Socket
from portlib.socktable import diagext, netns, sockdiag
from portlib.socktable.arguments import check_kind, combined_filter
from portlib.socktable.filters import SocketFilter
from portlib.socktable.query import CompiledFilter, Extras, Table, query_tables
from portlib.socktable.sockevents import SocketEvent, Tracker

# enum sknetlink_groups in linux/sock_diag.h
DESTROY_GROUPS = {
    (Protocol.TCP, Family.INET): 1,
    (Protocol.UDP, Family.INET): 2,
    (Protocol.TCP, Family.INET6): 3,
    (Protocol.UDP, Family.INET6): 4,
}
INET_DIAG_PROTOCOL = 10
PROTOCOL_BY_NUMBER = {number: protocol for protocol, number in sockdiag.IPPROTO_BY_PROTOCOL.items()}


def group_mask(tables: Iterable[Table]) -> int:
    """The ``nl_groups`` bits for the destroy groups of ``tables`` (group N is bit N-1)."""
    mask = 0
    for table in tables:
        group = DESTROY_GROUPS.get(table)
        if group is not None:
            mask |= 1 << (group - 1)
    return mask


def decode_destroyed(data: bytes) -> list[Socket]:
    """The sockets in one multicast read (each names its protocol in an attribute)."""
    found = []
    for offset, length, kind in sockdiag.messages(data, 0):
        if kind != sockdiag.SOCK_DIAG_BY_FAMILY or length < sockdiag.MESSAGE_LEN:
            continue
        attrs = diagext.attributes(data, offset + sockdiag.MESSAGE_LEN, offset + length)
        number = attrs.get(INET_DIAG_PROTOCOL)
        protocol = PROTOCOL_BY_NUMBER.get(number[0]) if number is not None and len(number) else None
        if protocol is not None:
            one = sockdiag.decode_one(data, offset, length, protocol)
            if one is not None:
                found.append(one)
    return found


def _join_groups(mask: int, namespace: str | None) -> socket.socket | None:
    """A non-blocking socket in the destroy groups, or None where they cannot be joined."""
    if not mask:
        return None
    try:
        with netns.entered(namespace) if namespace else contextlib.nullcontext():
            sock = sockdiag.open_socket()
        sock.bind((0, mask))
    except OSError:
        return None
    sock.setblocking(False)
    return sock


async def watch_sockets(
    kind: str = "tcp",
    *,
    filter: str | SocketFilter | None = None,
    interval: float = 1.0,
    processes: bool = True,
    netns: str | None = None,
) -> AsyncIterator[SocketEvent]:
    """Yield a :class:`SocketEvent` for each socket of ``kind`` passing ``filter`` that opens,
    changes state or closes, until the caller stops iterating.

    Closed sockets carry the owners seen at the last look (the kernel's notice of
    a destroyed socket names none). ``interval`` is the time between looks, which
    bounds how late an opening is noticed; closings of TCP/UDP sockets arrive at
    once where the kernel offers its destroy groups.

    Example:

    >>> import asyncio, portlib
    >>> async def main():
    ...     async for event in portlib.watch_sockets("tcp", filter="state listening"):
    ...         print(event.kind, event.socket.local, [p.name for p in event.socket.owners])
    >>> asyncio.run(main())  # doctest: +SKIP
    opened 127.0.0.1:8000 ['python3']
    closed 127.0.0.1:8000 ['python3']
    """
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not interval > 0:
        raise SocketQueryError(f"interval must be a number of seconds above 0, not {interval!r}")
    tables, unix = check_kind(kind)
    socket_filter = combined_filter(filter)
    wanted = _unseen_test(socket_filter)

    def look() -> list[Socket]:
        found = query_tables(
            tables,
            unix,
            socket_filter=socket_filter,
            processes=processes,
            extras=Extras(extended=True),
            namespace=netns,
        )
        return [s for s in found if isinstance(s, Socket)]

    tracker = Tracker(await asyncio.to_thread(look))
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    group_socket = _join_groups(group_mask(tables), netns)
    if group_socket is not None:
        loop.add_reader(group_socket.fileno(), _drain, group_socket, queue)
    try:
        next_look = loop.time() + interval
        while True:
            try:
                data = await asyncio.wait_for(queue.get(), max(0.0, next_look - loop.time()))
            except TimeoutError:
                current = await asyncio.to_thread(look)
                next_look = loop.time() + interval
                events = tracker.look(current, time.time())
            else:
                now = time.time()
                notices = (tracker.destroyed(s, now, wanted) for s in decode_destroyed(data))
                events = [event for event in notices if event is not None]
            for event in events:
                yield event
    finally:
        if group_socket is not None:
            loop.remove_reader(group_socket.fileno())
            group_socket.close()


def _unseen_test(socket_filter: SocketFilter | None) -> Callable[[Socket], bool]:
    """Which destroyed sockets never seen at a look to report.

    The kernel's notice gives the state at destruction, not the one the socket
    had, so when the filter asks for states no unseen socket can be known to pass.
    """
    if socket_filter is None:
        return lambda _sock: True
    if socket_filter.states is not None:
        return lambda _sock: False
    return CompiledFilter.of(SocketFilter(socket_filter.expression)).keep or (lambda _sock: True)


def _drain(sock: socket.socket, queue: asyncio.Queue[bytes]) -> None:
    """Read what the groups sent (the reader callback); a lost notice is caught by a look."""
    while True:
        try:
            data = sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # ENOBUFS: notices were dropped; the next look catches up
            return
        if not data:
            return
        queue.put_nowait(data)


__all__ = ["decode_destroyed", "group_mask", "watch_sockets"]
