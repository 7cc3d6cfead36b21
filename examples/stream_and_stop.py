"""Stream verdicts with ``async for`` as they are decided, and stop at the first open port.

Run: python examples/stream_and_stop.py
It opens a listener of its own so there is something to find, then scans all
65535 TCP ports of 127.0.0.1 and stops as soon as one is open: leaving the
``async with`` block cancels the rest of the scan and closes every socket.
"""

import asyncio
import socket

import portlib


async def main() -> None:
    with socket.socket() as listener:  # something to find
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        decided = 0
        async with portlib.Scanner("127.0.0.1", "1-65535", discovery=False) as results:
            async for result in results:
                decided += 1
                if result.state is portlib.PortState.OPEN:
                    print(f"first open port: {result.port}/{result.protocol} ({result.reason})")
                    break  # stop early; the scanner cancels what is still in flight
        print(f"stopped after {decided} of 65535 verdicts")


asyncio.run(main())
