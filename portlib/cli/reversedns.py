"""``-R``: the names of a scan's addresses, by reverse DNS (what nmap does by default).

portlib never looks names up unless asked (``-n`` is its default), because a lookup
sends a query to the configured name server. Names come from the network, so the
outputs print them through :func:`portlib.textsafe.printable`.

A scan hands its hosts over as they finish; :class:`ReverseNames` looks each one's
name up in the background and gives the hosts back in the order they came, each as
soon as it and every host before it has its answer, so the outputs keep streaming.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from portlib.model import HostResult, IPAddress, ScanReport

LOOKUP_TIMEOUT = 5.0  # seconds the last lookups may take at the end; a silent server costs no more
LOOKUPS_AT_ONCE = 32


def _lookup(address: IPAddress) -> str | None:
    try:
        name, _ = socket.getnameinfo((str(address), 0), socket.NI_NAMEREQD)
    except OSError:
        return None
    return name


class ReverseNames:
    """Hosts in, the same hosts out in the same order, each with the reverse-DNS name
    of its address when it had none and the resolver knows one."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(LOOKUPS_AT_ONCE, thread_name_prefix="portlib-rdns")
        self._pending: deque[tuple[HostResult, Future[str | None] | None]] = deque()

    def submit(self, host: HostResult) -> list[HostResult]:
        """Start ``host``'s lookup; returns the hosts now ready, in order."""
        lookup = None if host.hostname else self._pool.submit(_lookup, host.address)
        self._pending.append((host, lookup))
        return self._ready(deadline=None)

    def finish(self, *, wait: bool = True) -> list[HostResult]:
        """Every host still waiting, after at most LOOKUP_TIMEOUT more seconds for their
        names (none when ``wait`` is false: an interrupted scan ends at once)."""
        deadline = time.monotonic() + (LOOKUP_TIMEOUT if wait else 0.0)
        hosts = self._ready(deadline=deadline)
        self._pool.shutdown(wait=False, cancel_futures=True)
        return hosts

    def _ready(self, deadline: float | None) -> list[HostResult]:
        ready = []
        while self._pending:
            host, lookup = self._pending[0]
            name = None
            if lookup is not None:
                if deadline is None and not lookup.done():
                    break
                try:
                    left = 0.0 if deadline is None else max(0.0, deadline - time.monotonic())
                    name = lookup.result(timeout=left)
                except FutureTimeout:
                    name = None
            self._pending.popleft()
            ready.append(dataclasses.replace(host, hostname=name) if name else host)
        return ready


def named_hosts(hosts: Iterable[HostResult]) -> list[HostResult]:
    """``hosts`` with their reverse-DNS names, looked up together."""
    names = ReverseNames()
    ready = []
    for host in hosts:
        ready.extend(names.submit(host))
    return ready + names.finish()


def with_reverse_names(report: ScanReport) -> ScanReport:
    """``report`` with a name for every host that had none and has one in reverse DNS.

    >>> with_reverse_names(report).hosts[0].hostname             # doctest: +SKIP
    'localhost'
    """
    if all(h.hostname for h in report.hosts):
        return report
    return dataclasses.replace(report, hosts=tuple(named_hosts(report.hosts)))
