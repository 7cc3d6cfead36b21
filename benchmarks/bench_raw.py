"""Raw scans (SYN, UDP) against ``nmap -sS`` / ``nmap -sU``: same work, same run, medians.

Rows (targets from issues 5 and 16):

* ``lab -p- SYN, 1000 DROP``: all 65535 ports of a lab host that DROPs 1000 ports (<= 0.2).
* ``loopback -p- SYN``: all ports of 127.0.0.1 (<= 0.6).
* ``loopback -p- UDP``: all ports of 127.0.0.1, where Linux does not rate-limit ICMP (<= 0.7).
* ``lab 100 UDP, ICMP limit``: 100 UDP ports of a lab host with the kernel's default ICMP
  rate limit (exact, and no slower than nmap: <= 1.0). Every run, timed on either side,
  gets a fresh lab host, so each starts on a full ICMP bucket (a scan right after
  another finds it empty); each run's time and exactness against the known truth are
  recorded, and the row says whether nmap's answers were exact.

Everything runs inside a lab scanner namespace (tests.lab), loopback rows too, so no
other process's sockets can make the sides disagree. Each side is a fresh process
started the same way (``ip netns exec``): interpreter and nmap start-up both count.
Both sides must report the same state for every port (parsed from ``-oG -``, and
from an untimed full listing: nmap ``-ddd``, portlib ``--json --all-ports``); a disagreement
fails the run (exit status 1). In the ICMP-limited row the truth is known instead:
portlib must match it, and every run of either side is listed in the result file
with its time, whether it was exact, and the ports it got wrong. The send rate
(probes per second of the scan itself) comes from an extra in-process run of the
engine.

    python -m benchmarks.bench_raw                # all rows, 3 runs each (UDP-limited: 1)
    python -m benchmarks.bench_raw --only udp-limited --runs 2
    python -m benchmarks.bench_raw --only syn-lab --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    Row,
    interleaved_runs,
    lab_skip_reason,
    loopback_listeners,
    netns_exec,
    write_results,
)

ROOT = Path(__file__).resolve().parent.parent
LAB_SERVED = [22, 80, 443, 8080, 50000]
DROPPED = list(range(10000, 11000))
LOOPBACK_TCP = [22, 80, 2024, 8080, 45000]
LOOPBACK_UDP = [53, 7, 5000, 40000]
LIMITED_UDP_PORTS = "1-100"
LIMITED_SERVED = {53: "dns", 123: "ntp", 7: "echo"}
LIMITED_DROPPED = [20, 21, 22, 23, 24]

States = dict[int, str]


RATE_SNIPPET = """
import asyncio, ipaddress, sys, time
from portlib.model import Protocol, ScanMethod
from portlib.scanning.contract import ScanWork
from portlib.scanning.raw.engine import RawEngine
from portlib.scanning.timing import preset
method, host, first, last = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
async def emit(result):
    pass
async def main():
    engine = RawEngine(ScanMethod(method))
    protocol = Protocol.UDP if method == "udp" else Protocol.TCP
    work = ScanWork((ipaddress.ip_address(host),), tuple(range(first, last + 1)), protocol,
                    preset(3), 1)
    start = time.perf_counter()
    await engine.run(work, emit)
    elapsed = time.perf_counter() - start
    print(engine.probes_sent, round(elapsed, 3), engine.receive_drops)
asyncio.run(main())
"""


skip_reason = lab_skip_reason


def parse_grepable(text: str, scanned: Sequence[int]) -> States:
    """Every scanned port's state from ``-oG -`` (listed ports, the rest "Ignored State")."""
    listed: States = {}
    ignored: str | None = None
    for line in text.splitlines():
        if not line.startswith("Host:") or "Ports:" not in line:
            continue
        rest = line.split("Ports:", 1)[1]
        ports_part, _, tail = rest.partition("\t")
        for entry in ports_part.split(","):
            fields = entry.strip().split("/")
            if len(fields) > 1 and fields[0].isdigit():
                listed[int(fields[0])] = fields[1]
        if "Ignored State:" in tail:
            ignored = tail.split("Ignored State:", 1)[1].split("(")[0].strip()
    # When two states are both too common to list, -oG names neither: those ports
    # stay "?" here, and the untimed full-listing run (_full_states) settles them.
    return {p: listed.get(p, ignored or "?") for p in scanned}


def _portlib(ns: str, flag: str, target: str, spec: str, scanned: Sequence[int]) -> States:
    argv = [sys.executable, "-m", "portlib", "scan", flag, "-Pn", "-p", spec, target, "-oG", "-"]
    return parse_grepable(netns_exec(ns, argv), scanned)


def _nmap(ns: str, flag: str, target: str, spec: str, scanned: Sequence[int]) -> States:
    argv = ["nmap", flag, "-n", "-Pn", "-p", spec, target, "-oG", "-"]
    return parse_grepable(netns_exec(ns, argv), scanned)


def _full_states(ns: str, flag: str, target: str, spec: str, scanned: Sequence[int]) -> States:
    """nmap's state of every port: with -ddd nmap lists ignored ports too (untimed run)."""
    out = Path(netns_exec(ns, ["mktemp", "/tmp/portlib-bench-XXXXXX.gnmap"]).strip())
    try:
        netns_exec(ns, ["nmap", flag, "-n", "-Pn", "-p", spec, target, "-ddd", "-oG", str(out)])
        return parse_grepable(out.read_text(), scanned)
    finally:
        out.unlink(missing_ok=True)


def _portlib_full(ns: str, flag: str, target: str, spec: str) -> States:
    """portlib's state of every port, from its JSON report, none folded (untimed run)."""
    import json

    argv = [sys.executable, "-m", "portlib", "scan", flag, "-Pn", "-p", spec, target, "--json"]
    argv.append("--all-ports")
    report = json.loads(netns_exec(ns, argv))
    return {p["port"]: p["state"] for h in report["hosts"] for p in h["ports"]}


def _send_rate(ns: str, method: str, target: str, first: int, last: int) -> dict[str, object]:
    out = netns_exec(
        ns, [sys.executable, "-c", RATE_SNIPPET, method, target, str(first), str(last)]
    )
    sent, elapsed, drops = out.split()
    return {
        "probes_sent": int(sent),
        "engine_seconds": float(elapsed),
        "send_rate_pps": round(int(sent) / float(elapsed)),
        "receive_drops": int(drops),
    }


def _compare(
    name: str,
    peer: str,
    target_ratio: float,
    runs: int,
    portlib_side: Callable[[], States],
    nmap_side: Callable[[], States],
    full: tuple[Callable[[], States], Callable[[], States]] | None = None,
    warmup: bool = True,
) -> Row:
    p_samples, n_samples, p_answers, n_answers = interleaved_runs(
        portlib_side, nmap_side, runs, warmup=warmup
    )
    reference = n_answers[0]
    agreed = all(a == reference for a in p_answers + n_answers)
    if full is not None:  # every port's state, not only the ones -oG lists
        portlib_full, nmap_full = full[0](), full[1]()
        if portlib_full != nmap_full:
            agreed = False
            p_answers.append(portlib_full)
            n_answers.append(nmap_full)
            reference = nmap_full
        else:
            reference = nmap_full
    detail: dict[str, object] = {
        "portlib_samples_s": [round(s, 3) for s in p_samples],
        "nmap_samples_s": [round(s, 3) for s in n_samples],
        "states": _summary(reference),
    }
    if not agreed:
        detail["differences"] = [
            {p: (a.get(p), reference.get(p)) for p in reference if a.get(p) != reference.get(p)}
            for a in p_answers + n_answers
        ]
    return Row(
        name,
        peer,
        statistics.median(p_samples),
        statistics.median(n_samples),
        runs,
        target_ratio=target_ratio,
        agreed=agreed,
        detail=detail,
    )


def _summary(states: States) -> dict[str, object]:
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state] = counts.get(state, 0) + 1
    rare = {p: s for p, s in states.items() if counts[s] < 50}
    return {"counts": counts, "ports": rare}


def _udp_limited_row(lab: Any, ns: str, runs: int) -> Row:
    """100 UDP ports of a host rate-limiting ICMP errors (1 s default): each run on a fresh host.

    A fresh host is a fresh peer for the target's kernel, so its ICMP bucket is
    full when every run starts, timed or not, portlib's or nmap's. Both sides
    list every port (portlib ``--json --all-ports``, nmap ``-ddd``) in the timed run itself,
    which is checked against the truth the lab set up.
    """
    scanned = list(range(1, 101))
    truth = dict.fromkeys(scanned, "closed") | dict.fromkeys(LIMITED_DROPPED, "open|filtered")
    truth |= {p: "open" for p in LIMITED_SERVED if p in truth}
    sides: dict[str, Callable[[str], States]] = {
        "portlib": lambda a: _portlib_full(ns, "-sU", a, LIMITED_UDP_PORTS),
        "nmap": lambda a: _full_states(ns, "-sU", a, LIMITED_UDP_PORTS, scanned),
    }
    samples: dict[str, list[float]] = {side: [] for side in sides}
    exact: dict[str, list[bool]] = {side: [] for side in sides}
    records: list[dict[str, object]] = []
    for run in range(1, runs + 1):
        for side, scan in sides.items():
            host = lab.add_host(f"lim{run}{side[0]}")  # default net.ipv4.icmp_ratelimit
            host.serve_udp(LIMITED_SERVED)
            host.drop(LIMITED_DROPPED, proto="udp")
            start = time.perf_counter()
            states = scan(str(host.v4))
            seconds = time.perf_counter() - start
            wrong = {p: (states.get(p), s) for p, s in truth.items() if states.get(p) != s}
            samples[side].append(seconds)
            exact[side].append(not wrong)
            records.append(
                {"side": side, "run": run, "seconds": round(seconds, 3), "exact": not wrong}
                | ({"wrong": _summary_wrong(wrong)} if wrong else {})
            )
    detail: dict[str, object] = {
        "bucket_at_start": "full (a fresh lab host for every run)",
        "portlib_samples_s": [round(s, 3) for s in samples["portlib"]],
        "nmap_samples_s": [round(s, 3) for s in samples["nmap"]],
        "portlib_exact": exact["portlib"],
        "nmap_exact": exact["nmap"],
        "runs": records,
        "states": _summary(truth),
    }
    return Row(
        "lab host 100 UDP ports, default ICMP rate limit",
        "nmap -sU -n -Pn",
        statistics.median(samples["portlib"]),
        statistics.median(samples["nmap"]),
        runs,
        target_ratio=1.0,
        agreed=all(exact["portlib"]),  # the truth is known: portlib must match it
        detail=detail,
    )


def _summary_wrong(wrong: dict[int, tuple[str | None, str]]) -> dict[str, object]:
    """Ports a run got wrong: how many per (found, true) pair, and which."""
    pairs: dict[str, list[int]] = {}
    for port, (found, true) in sorted(wrong.items()):
        pairs.setdefault(f"{found} (truth: {true})", []).append(port)
    return {key: {"count": len(ports), "ports": ports} for key, ports in pairs.items()}


def run_rows(runs: int, only: set[str] | None, limited_runs: int = 1) -> list[Row]:
    sys.path.insert(0, str(ROOT))
    from tests.lab import Lab

    everything = list(range(1, 65536))
    rows: list[Row] = []
    with Lab() as lab:
        ns = lab.scanner_ns
        if not only or {"syn-loopback", "udp-loopback"} & only:
            with loopback_listeners(ns, LOOPBACK_TCP, LOOPBACK_UDP):
                for key, flag, method, ratio in (
                    ("syn-loopback", "-sS", "syn", 0.6),
                    ("udp-loopback", "-sU", "udp", 0.7),
                ):
                    if only and key not in only:
                        continue
                    row = _compare(
                        f"loopback -p- {flag} (65535 ports)",
                        f"nmap {flag} -n -Pn",
                        ratio,
                        runs,
                        lambda f=flag: _portlib(ns, f, "127.0.0.1", "1-65535", everything),
                        lambda f=flag: _nmap(ns, f, "127.0.0.1", "1-65535", everything),
                        full=(
                            lambda f=flag: _portlib_full(ns, f, "127.0.0.1", "1-65535"),
                            lambda f=flag: _full_states(ns, f, "127.0.0.1", "1-65535", everything),
                        ),
                    )
                    row.detail |= _send_rate(ns, method, "127.0.0.1", 1, 65535)
                    rows.append(row)
        if not only or "syn-lab" in only:
            host = lab.add_host("dropper", v4="192.0.2.10")
            host.serve_tcp(LAB_SERVED)
            host.drop(DROPPED, proto="tcp")
            address = str(host.v4)
            row = _compare(
                "lab host -p- -sS, 1000 ports DROPped",
                "nmap -sS -n -Pn",
                0.2,
                runs,
                lambda: _portlib(ns, "-sS", address, "1-65535", everything),
                lambda: _nmap(ns, "-sS", address, "1-65535", everything),
                full=(
                    lambda: _portlib_full(ns, "-sS", address, "1-65535"),
                    lambda: _full_states(ns, "-sS", address, "1-65535", everything),
                ),
            )
            row.detail |= _send_rate(ns, "syn", address, 1, 65535)
            rows.append(row)
        if not only or "udp-limited" in only:
            rows.append(_udp_limited_row(lab, ns, limited_runs))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_raw")
    parser.add_argument(
        "--runs", type=int, default=None, help="timed runs per side (default 3; udp-limited: 1)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=["syn-lab", "syn-loopback", "udp-loopback", "udp-limited"],
    )
    args = parser.parse_args(argv)
    reason = skip_reason()
    if reason:
        write_results("raw_scan", [Row("raw scans", "nmap", None, None, 0, skipped=reason)])
        return 0
    only = set(args.only) if args.only else None
    rows = run_rows(args.runs or 3, only, limited_runs=args.runs or 1)
    write_results("raw_scan", rows)
    for row in rows:
        rate = row.detail.get("send_rate_pps")
        if rate is not None:
            print(f"{row.benchmark}: engine send rate {rate} probes/s")
    failed = [r.benchmark for r in rows if r.agreed is False]
    if failed:
        print(f"DISAGREEMENT on port states: {', '.join(failed)} (see results/raw_scan.json)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
