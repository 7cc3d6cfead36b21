"""Drive ConnectEngine from plain values (for subprocesses, namespaces and the lab).

``run_engine`` builds a ``ScanWork``, runs the engine and returns every verdict
as a sorted list of ``(host, port, state, reason)`` strings and ints, so the
result pickles and compares simply. ``python -m tests.connect_probe`` does the
same from the command line and prints JSON (used under a lowered fd limit).
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
from ipaddress import ip_address

from portlib.model import PortResult, Protocol
from portlib.scanning.connect.engine import ConnectEngine
from portlib.scanning.contract import ScanWork
from portlib.scanning.timing import preset

Verdicts = list[tuple[str, int, str, str]]


def run_engine(
    hosts: list[str] | str,
    ports: list[int] | range,
    *,
    timing: int = 4,
    seed: int = 1,
    timeout: float | None = None,
    retries: int | None = None,
    rate: float | None = None,
    max_sockets: int | None = None,
    workers: int | None = None,
    shard: tuple[int, int] | None = None,
) -> Verdicts:
    """Scan and return sorted verdicts; raises if any probe was emitted twice."""
    if isinstance(hosts, str):
        hosts = [hosts]
    profile = preset(timing).with_overrides(timeout=timeout, retries=retries, rate=rate)
    work = ScanWork(
        tuple(ip_address(h) for h in hosts), tuple(ports), Protocol.TCP, profile, seed, shard
    )
    seen: dict[tuple[str, int], PortResult] = {}

    async def emit(result: PortResult) -> None:
        key = (str(result.host), result.port)
        if key in seen:
            raise AssertionError(f"emitted twice: {key}")
        seen[key] = result

    asyncio.run(ConnectEngine(max_sockets=max_sockets, workers=workers).run(work, emit))
    expected = len(hosts) * len(ports)
    if shard is not None:
        expected = len(range(shard[0], expected, shard[1]))
    if len(seen) != expected:
        raise AssertionError(f"{len(seen)} verdicts for {expected} probes")
    return sorted((h, p, str(r.state), str(r.reason)) for (h, p), r in seen.items())


def main(argv: list[str]) -> int:
    """``python -m tests.connect_probe HOST FIRST-LAST [NOFILE]`` -> JSON verdicts."""
    host, span = argv[0], argv[1]
    if len(argv) > 2:
        limit = int(argv[2])
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    first, last = (int(x) for x in span.split("-"))
    print(json.dumps(run_engine(host, range(first, last + 1))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
