"""A sleep that an event cuts short: what an engine's loop awaits between its steps.

An engine sleeps until its next deadline, unless a reader callback (a reply,
an epoll event, a worker's record) has something for it first; that callback
calls :meth:`Wakeup.wake`. Waking a loop that is not asleep does nothing.
"""

from __future__ import annotations

import asyncio


class Wakeup:
    """``await wakeup.sleep(timeout)`` returns after ``timeout`` s or at ``wake()``."""

    __slots__ = ("_waiter",)

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None

    @property
    def sleeping(self) -> bool:
        return self._waiter is not None

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def sleep(self, timeout: float | None) -> None:
        """Sleep ``timeout`` seconds (None: until woken), or less if woken meanwhile."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, self.wake)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._waiter = None
