"""Connect scan against ``nmap -sT``: same work, same run, medians, same open ports.

Rows (targets from issue 4):

* ``loopback -p-``: all 65535 ports of 127.0.0.1 (ratio <= 0.7).
* ``lab -p- 1000 DROP``: all 65535 ports of a lab host that DROPs 1000 ports (<= 0.6).
* ``lab /28 top-1000``: the top 1000 ports of a lab /28 with 4 hosts up, host
  discovery on for both sides (<= 1.0).

Everything runs inside a lab scanner namespace (built with tests.lab, as the
tests do), so no other process's listener can make the two sides disagree:
both scan 127.0.0.1 of that namespace, where a helper listens on a few ports.
Each side is a fresh process started the same way (``ip netns exec``), so
interpreter and nmap start-up are both counted. A side that reports different
open ports than the other makes the run fail (exit status 1).

    python -m benchmarks.bench_connect            # all rows, 5 runs each
    python -m benchmarks.bench_connect --quick    # 3 runs
    python -m benchmarks.bench_connect --profile  # where portlib's time goes (loopback)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.common import (
    Row,
    interleaved_runs,
    lab_skip_reason,
    loopback_listeners,
    netns_exec,
    write_results,
)

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK_PORTS = [22, 80, 2024, 8080, 45000]  # some inside the ephemeral range
LAB_SERVED = [22, 80, 443, 8080, 50000]
DROPPED = list(range(10000, 11000))
SUBNET = "192.0.2.16/28"
SUBNET_UP = ["192.0.2.17", "192.0.2.18", "192.0.2.20", "192.0.2.29"]
SUBNET_SERVED = [[22, 3306], [80, 443], [22, 80, 8080], [443, 5432]]

PORTLIB_SNIPPET = """
import json, sys
import portlib
targets, ports, discovery = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
report = portlib.scan(targets, ports, discovery=discovery)
print(json.dumps({str(h.address): sorted(p.port for p in h.open_ports()) for h in report.hosts
                  if h.open_ports()}))
"""


skip_reason = lab_skip_reason


def parse_grepable(text: str) -> dict[str, list[int]]:
    """Open ports per host from nmap's ``-oG -`` output."""
    found: dict[str, list[int]] = {}
    for line in text.splitlines():
        if not line.startswith("Host:") or "Ports:" not in line:
            continue
        host = line.split()[1]
        ports_part = line.split("Ports:", 1)[1].split("\t", 1)[0]
        opened = [
            int(entry.strip().split("/")[0])
            for entry in ports_part.split(",")
            if entry.strip() and entry.strip().split("/")[1] == "open"
        ]
        if opened:
            found[host] = sorted(opened)
    return found


def _compare(
    name: str,
    target_ratio: float,
    runs: int,
    portlib_side: Callable[[], dict[str, list[int]]],
    nmap_side: Callable[[], dict[str, list[int]]],
    truth: dict[str, list[int]],
) -> Row:
    p_samples, n_samples, p_answers, n_answers = interleaved_runs(portlib_side, nmap_side, runs)
    agreed = all(a == truth for a in p_answers) and all(a == truth for a in n_answers)
    detail: dict[str, object] = {
        "portlib_samples_s": [round(s, 3) for s in p_samples],
        "nmap_samples_s": [round(s, 3) for s in n_samples],
        "truth": truth,
    }
    if not agreed:
        detail["portlib_answers"] = p_answers
        detail["nmap_answers"] = n_answers
    return Row(
        name,
        "nmap -sT -n",
        statistics.median(p_samples),
        statistics.median(n_samples),
        runs,
        target_ratio=target_ratio,
        agreed=agreed,
        detail=detail,
    )


def _portlib(ns: str, targets: str, ports: str, discovery: bool) -> dict[str, list[int]]:
    out = netns_exec(
        ns, [sys.executable, "-c", PORTLIB_SNIPPET, targets, ports, "1" if discovery else "0"]
    )
    result: dict[str, list[int]] = json.loads(out.strip().splitlines()[-1])
    return result


def _nmap(ns: str, targets: str, ports: str, discovery: bool) -> dict[str, list[int]]:
    argv = ["nmap", "-sT", "-n", "-p", ports, "-oG", "-", *targets.split()]
    if not discovery:
        argv.insert(3, "-Pn")
    return parse_grepable(netns_exec(ns, argv))


def top_ports_spec(count: int) -> str:
    from portlib.services import top_ports

    return ",".join(str(p) for p in sorted(top_ports(count)))


def run_rows(runs: int, only: set[str] | None) -> list[Row]:
    sys.path.insert(0, str(ROOT))
    from tests.lab import Lab

    rows: list[Row] = []
    with Lab() as lab:
        ns = lab.scanner_ns
        if not only or "loopback" in only:
            with loopback_listeners(ns, LOOPBACK_PORTS):
                truth = {"127.0.0.1": sorted(LOOPBACK_PORTS)}
                rows.append(
                    _compare(
                        "loopback -p- (65535 ports)",
                        0.7,
                        runs,
                        lambda: _portlib(ns, "127.0.0.1", "1-65535", False),
                        lambda: _nmap(ns, "127.0.0.1", "1-65535", False),
                        truth,
                    )
                )
        if not only or "drop" in only:
            host = lab.add_host("dropper", v4="192.0.2.10")
            host.serve_tcp(LAB_SERVED)
            host.drop(DROPPED, proto="tcp")
            address = str(host.v4)
            rows.append(
                _compare(
                    "lab host -p-, 1000 ports DROPped",
                    0.6,
                    runs,
                    lambda: _portlib(ns, address, "1-65535", False),
                    lambda: _nmap(ns, address, "1-65535", False),
                    {address: sorted(LAB_SERVED)},
                )
            )
        if not only or "subnet" in only:
            truth = {}
            for i, address in enumerate(SUBNET_UP):
                member = lab.add_host(f"sub{i}", v4=address)
                served = SUBNET_SERVED[i]
                member.serve_tcp(served)
                truth[address] = sorted(served)
            spec = top_ports_spec(1000)
            for served in truth.values():
                if not set(served) <= {int(p) for p in spec.split(",")}:
                    raise RuntimeError("a served port is not among the top 1000")
            rows.append(
                _compare(
                    f"lab {SUBNET} top 1000, discovery on, 4 up",
                    1.0,
                    runs,
                    lambda: _portlib(ns, SUBNET, spec, True),
                    lambda: _nmap(ns, SUBNET, spec, True),
                    truth,
                )
            )
    return rows


def profile_loopback() -> None:
    """cProfile of a loopback -p- scan: the engine alone in one process, then portlib.scan.

    Worker processes are invisible to cProfile, so the engine is profiled with
    ``workers=1``; the second profile shows what the Scanner adds per verdict.
    """
    import asyncio
    import cProfile
    import pstats
    from ipaddress import ip_address

    import portlib
    from portlib.model import PortResult, Protocol
    from portlib.scanning.connect.engine import ConnectEngine
    from portlib.scanning.contract import ScanWork
    from portlib.scanning.timing import preset

    async def emit(result: PortResult) -> None:
        pass

    work = ScanWork((ip_address("127.0.0.1"),), tuple(range(1, 65536)), Protocol.TCP,
                    preset(3), seed=1)  # fmt: skip
    for title, action in (
        ("engine alone, workers=1", lambda: asyncio.run(ConnectEngine(workers=1).run(work, emit))),
        ("portlib.scan (parent process only)", lambda: portlib.scan("127.0.0.1", "1-65535",
                                                                    discovery=False)),
    ):  # fmt: skip
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.enable()
        action()
        profiler.disable()
        print(f"== {title}: {time.perf_counter() - start:.3f} s under the profiler")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_connect")
    parser.add_argument("--quick", action="store_true", help="3 runs per row instead of 5")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--only", action="append", choices=["loopback", "drop", "subnet"])
    parser.add_argument("--profile", action="store_true", help="profile a loopback scan only")
    args = parser.parse_args(argv)
    if args.profile:
        profile_loopback()
        return 0
    reason = skip_reason()
    if reason:
        write_results("connect_scan", [Row("connect scan", "nmap -sT", None, None, 0,
                                           skipped=reason)])  # fmt: skip
        return 0
    runs = args.runs or (3 if args.quick else 5)
    rows = run_rows(runs, set(args.only) if args.only else None)
    write_results("connect_scan", rows)
    failed = [r.benchmark for r in rows if r.agreed is False]
    if failed:
        print(f"DISAGREEMENT on open ports: {', '.join(failed)} (see results/connect_scan.json)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
