"""``-R``: the names of a report's addresses, by reverse DNS (what nmap does by default).

portlib never looks names up unless asked (``-n`` is its default), because a lookup
sends a query to the configured name server. Names come from the network, so the
outputs print them through :func:`portlib.textsafe.printable`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Iterable

from portlib.model import IPAddress, ScanReport

LOOKUP_TIMEOUT = 5.0  # seconds for one address; a silent name server costs no more
LOOKUPS_AT_ONCE = 32


async def reverse_names(addresses: Iterable[IPAddress]) -> dict[IPAddress, str]:
    """Address -> name for every address the resolver has a name for."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(LOOKUPS_AT_ONCE)

    async def one(address: IPAddress) -> tuple[IPAddress, str | None]:
        async with gate:
            try:
                name, _ = await asyncio.wait_for(
                    loop.getnameinfo((str(address), 0), socket.NI_NAMEREQD), LOOKUP_TIMEOUT
                )
            except (OSError, TimeoutError):
                return address, None
        return address, name

    found = await asyncio.gather(*(one(a) for a in dict.fromkeys(addresses)))
    return {address: name for address, name in found if name}


def with_reverse_names(report: ScanReport) -> ScanReport:
    """``report`` with a name for every host that had none and has one in reverse DNS.

    >>> with_reverse_names(report).hosts[0].hostname             # doctest: +SKIP
    'localhost'
    """
    unnamed = [h.address for h in report.hosts if not h.hostname]
    if not unnamed:
        return report
    names = asyncio.run(reverse_names(unnamed))
    hosts = tuple(
        dataclasses.replace(h, hostname=names[h.address])
        if not h.hostname and h.address in names
        else h
        for h in report.hosts
    )
    return dataclasses.replace(report, hosts=hosts)
