"""The engines' interruptible sleep."""

from __future__ import annotations

import asyncio
import time

import pytest

from portlib.scanning.wakeup import Wakeup


async def test_sleep_ends_at_its_timeout() -> None:
    wakeup = Wakeup()
    start = time.monotonic()
    await wakeup.sleep(0.05)
    assert time.monotonic() - start >= 0.045
    assert not wakeup.sleeping


async def test_wake_cuts_the_sleep_short() -> None:
    wakeup = Wakeup()
    asyncio.get_running_loop().call_later(0.01, wakeup.wake)
    start = time.monotonic()
    await wakeup.sleep(10.0)
    assert time.monotonic() - start < 5.0


async def test_wake_while_awake_is_forgotten() -> None:
    wakeup = Wakeup()
    wakeup.wake()  # nobody sleeps: nothing is kept for the next sleep
    start = time.monotonic()
    await wakeup.sleep(0.05)
    assert time.monotonic() - start >= 0.045


async def test_cancelled_sleep_leaves_no_waiter() -> None:
    wakeup = Wakeup()
    task = asyncio.create_task(wakeup.sleep(None))
    await asyncio.sleep(0.01)
    assert wakeup.sleeping
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not wakeup.sleeping
