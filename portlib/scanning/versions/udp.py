"""Service detection over UDP: portlib's service payloads, answers decoded per protocol.

The payloads are the raw scanner's (``portlib.scanning.raw.templates``): the port's own
first, then those of the other services detection can decode, since a service on an
unusual port still answers its own protocol. Each is sent twice at most.
"""

from __future__ import annotations

import asyncio
import dataclasses

from portlib.model import DetectedService, PortResult
from portlib.scanning.versions.found import Match
from portlib.scanning.versions.match import identify_udp
from portlib.scanning.versions.probes import PRINTER_PORTS, snmp_v3_discovery
from portlib.scanning.versions.rules import UDP_PAYLOAD_PORTS
from portlib.scanning.versions.session import CONF_CERTAIN, Progress, Waits

TRIES = 2


def udp_payloads(port: int, intensity: int) -> list[bytes]:
    """What to send to ``port``, in order (none at intensity 0 beyond the port's own)."""
    from portlib.scanning.raw.templates import payloads_for
    from portlib.scanning.raw.templates import udp_payloads as table

    own = list(table().get(port, ()))
    if port in UDP_PAYLOAD_PORTS and port == 161:
        own.append(snmp_v3_discovery())
    if intensity == 0 and own:
        return own
    others = [p for q in UDP_PAYLOAD_PORTS if q != port for p in payloads_for(q)]
    if port != 161:
        others.append(snmp_v3_discovery())
    return own + others if own else [b"", *others]


class _Answers(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[object, ...]) -> None:
        self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError):  # ICMP port unreachable
            self.queue.put_nowait(None)


def _merge(certain: Match, soft: Match | None) -> Match:
    """A certain answer, with what an earlier softer one said about the same service."""
    if soft is None or soft.name != certain.name:
        return certain
    extra = "; ".join(e for e in (certain.extra_info, soft.extra_info) if e) or None
    return dataclasses.replace(certain, extra_info=extra, os_hint=certain.os_hint or soft.os_hint)


async def detect_udp(
    result: PortResult, waits: Waits, intensity: int, progress: Progress
) -> DetectedService:
    if result.port in PRINTER_PORTS:
        return progress.verdict()
    loop = asyncio.get_running_loop()
    transport, answers = await loop.create_datagram_endpoint(
        _Answers, remote_addr=(str(result.host), result.port)
    )
    try:
        for payload in udp_payloads(result.port, intensity):
            for _ in range(TRIES):
                transport.sendto(payload)
                try:
                    data = await asyncio.wait_for(answers.queue.get(), waits.answer)
                except TimeoutError:
                    continue
                if data is None:  # unreachable: nothing listens after all
                    return progress.verdict()
                progress.heard(data)
                found = identify_udp(data)
                if found is not None and found.certain:
                    return progress.result(_merge(found, progress.soft), CONF_CERTAIN)
                if found is not None and progress.soft is None:
                    progress.soft = found
                break
    finally:
        transport.close()
    return progress.verdict()
