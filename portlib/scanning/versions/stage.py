"""Detection as the last stage of a scan (``Scanner(..., versions=True)``).

The scan's channel holds open verdicts back while the engines run; when the port
scan is over they are detected (as nmap's ``-sV`` does, after the port scan), the
scan's record is updated, and they go on to the consumer with ``detected`` filled.
"""

from __future__ import annotations

import dataclasses

from portlib.model import IPAddress, PortResult
from portlib.scanning.channel import Channel
from portlib.scanning.versions.detect import (
    DetectionOptions,
    detect_ports,
    median_rtt,
    wants_detection,
)


class OpenHeldChannel(Channel[PortResult]):
    """A scan channel that keeps the verdicts detection wants (open ports, UDP ports that
    may be open) until ``release``; the others pass at once."""

    __slots__ = ("held",)

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self.held: list[PortResult] = []

    def put(self, item: PortResult) -> bool:
        if wants_detection(item):
            self.held.append(item)
            return True
        return super().put(item)

    async def release(self, record: list[PortResult], options: DetectionOptions) -> None:
        """Detect the held ports, replace them in ``record`` and hand them on."""
        held, self.held = self.held, []  # the next host group's are held in turn
        detected = await detect_ports(held, options)
        replaced = {id(old): new for old, new in zip(held, detected, strict=True)}
        record[:] = [replaced.get(id(r), r) for r in record]
        for result in detected:  # past the hold: these are what it waited for
            if not super().put(result):
                await self.wait_for_room()


async def detect_held(
    channel: Channel[PortResult],
    record: list[PortResult],
    options: DetectionOptions,
    skip: frozenset[IPAddress] = frozenset(),
) -> None:
    """Detect what ``channel`` held during the port scan; the waits follow the port
    scan's RTT unless ``options`` fix one. Hosts in ``skip`` (timed out) are left out."""
    assert isinstance(channel, OpenHeldChannel)
    if skip and channel.held:
        channel.held = [r for r in channel.held if r.host not in skip]
    if options.rtt is None:
        options = dataclasses.replace(options, rtt=median_rtt(channel.held))
    await channel.release(record, options)
