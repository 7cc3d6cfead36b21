"""A bounded FIFO between the scan's producers (engines) and its one consumer.

Why not ``asyncio.Queue``: a -p- scan hands over 65535 verdicts, and the queue's
per-item bookkeeping was a visible share of the scan's time. Here the fast path
is a ``deque.append`` and a length check; tasks only park when the buffer is
full (producers) or empty (the consumer). ``close`` never blocks, so a
producer can always end the stream, also when the buffer is full.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class EndOfStream(Exception):
    """``receive`` on a closed, drained channel."""


class Channel(Generic[T]):
    """Many producers, one consumer; ``capacity`` items buffered before producers wait."""

    __slots__ = ("_capacity", "_closed", "_items", "_receiver", "_senders")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._items: deque[T] = deque()
        self._closed = False
        self._receiver: asyncio.Future[None] | None = None
        self._senders: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T) -> bool:
        """Append ``item``; True while there is room, False when the caller must
        ``await wait_for_room()`` before handing over more."""
        if self._closed:
            raise RuntimeError("put on a closed channel")
        self._items.append(item)
        receiver = self._receiver
        if receiver is not None and not receiver.done():
            receiver.set_result(None)
        return len(self._items) < self._capacity

    async def wait_for_room(self) -> None:
        """Return once the buffer is below capacity (or the channel is closed)."""
        while len(self._items) >= self._capacity and not self._closed:
            waiter = asyncio.get_running_loop().create_future()
            self._senders.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._senders:
                    self._senders.remove(waiter)

    async def send(self, item: T) -> None:
        if not self.put(item):
            await self.wait_for_room()

    def get_nowait(self) -> T:
        """The oldest item; ``IndexError`` when empty."""
        item = self._items.popleft()
        senders = self._senders
        while senders:
            waiter = senders.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
        return item

    async def receive(self) -> T:
        """The oldest item, waiting for one; ``EndOfStream`` once closed and drained."""
        while not self._items:
            if self._closed:
                raise EndOfStream
            waiter = asyncio.get_running_loop().create_future()
            self._receiver = waiter
            try:
                await waiter
            finally:
                self._receiver = None
        return self.get_nowait()

    def close(self) -> None:
        """End the stream: the consumer drains what is buffered, then gets EndOfStream."""
        self._closed = True
        receiver = self._receiver
        if receiver is not None and not receiver.done():
            receiver.set_result(None)
        for waiter in self._senders:
            if not waiter.done():
                waiter.set_result(None)
