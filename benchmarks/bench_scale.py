"""Scans of whole networks: wall time, peak memory and time to first probe, at two sizes.

The AnyIP lab (tests/lab/anyip.py): one target namespace answers for the scanned
prefix of 198.18.0.0/15, with listeners on 22, 80 and 443 and the upper half of the
prefix DROPped (down hosts). Each size gets a fresh lab. Ports 1-100 of every
address, one run per tool (the work is large):

* portlib ``-sS -n`` with discovery (its default);
* ``nmap -sS -T4 -n`` with discovery, stopped after ``--nmap-limit`` seconds and then
  reported as "> N s";
* ``masscan --rate 100000`` (no discovery, as ``-Pn``) on the same ports, stopped after
  twice its sending time plus a minute.

Every tool runs inside the scanner namespace under a small Python wrapper that times
it and reads its peak RSS from ``getrusage(RUSAGE_CHILDREN)`` (the largest single
process of the tool: its send workers are not added up). The first packet of the scan
is caught by a packet socket in the target namespace, so "first probe" is when a
probe reached the target, counted from the tool's start. The open ports each tool
found are compared with the lab's ground truth: how many it missed, how many it
invented.

    python -m benchmarks.bench_scale                 # /20 and /15 (about 10 min)
    python -m benchmarks.bench_scale --quick         # /24 and /20
    python -m benchmarks.bench_scale --nmap-limit 120
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.common import ROOT, Row, peer_missing, timed_env, write_results

if TYPE_CHECKING:
    from tests.lab.anyip import AnyIPHost
    from tests.lab.core import Lab

PORTS = "1-100"
LISTENING = (22, 80, 443)
FULL_PREFIXES = ("198.18.0.0/20", "198.18.0.0/15")
QUICK_PREFIXES = ("198.18.0.0/24", "198.18.0.0/20")
MASSCAN_RATE = 100000
MASSCAN_SLACK_S = 60.0  # start-up, ARP and its 10 s --wait

# Runs the tool as its child; prints wall seconds, peak RSS (KiB), exit status, timed out.
_WRAPPER = """
import json, resource, subprocess, sys, time
limit, out = float(sys.argv[1]), sys.argv[2]
start_wall, start = time.time(), time.perf_counter()
with open(out, "wb") as sink:
    proc = subprocess.Popen(sys.argv[3:], stdout=sink, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=limit)
        timed_out = False
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        timed_out = True
elapsed = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"start": start_wall, "seconds": elapsed, "rss_kib": rss,
                  "status": proc.returncode, "timed_out": timed_out,
                  "stderr": err.decode(errors="replace")[-1500:]}))
"""

# In the target namespace: the arrival time of the first IPv4 packet from the scanner.
_FIRST_PACKET = """
import socket, struct, sys, time
src = socket.inet_aton(sys.argv[1])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind(("eth0", 0))
s.settimeout(float(sys.argv[2]))
print("READY", flush=True)
try:
    while True:
        frame = s.recv(64)
        if frame[26:30] == src and frame[23] in (1, 6):  # ICMP or TCP from the scanner
            print(time.time(), flush=True)
            break
except socket.timeout:
    print("none", flush=True)
"""


@dataclass
class Tool:
    argv: list[str]
    output: Path
    read: Callable[[str], set[tuple[str, int]]]


@dataclass
class ToolRun:
    seconds: float
    rss_mib: float
    timed_out: bool
    limit_s: float
    first_probe_s: float | None
    open_found: set[tuple[str, int]]

    def missed(self, truth: set[tuple[str, int]]) -> int:
        return len(truth - self.open_found)

    def invented(self, truth: set[tuple[str, int]]) -> int:
        return len(self.open_found - truth)


def skip_reason() -> str | None:
    sys.path.insert(0, str(ROOT))
    from tests.lab import lab_available

    return lab_available()


def _first_packet_watch(target_ns: str, source: str, limit: float) -> subprocess.Popen[str]:
    watch = subprocess.Popen(
        ["ip", "netns", "exec", target_ns, sys.executable, "-c", _FIRST_PACKET, source,
         str(limit)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    if watch.stdout is None or watch.stdout.readline().strip() != "READY":
        raise RuntimeError("the first-packet watch did not start")
    return watch


def run_tool(
    lab: Lab, target_ns: str, argv: Sequence[str], out: Path, limit: float
) -> tuple[dict[str, object], float | None]:
    """Run ``argv`` in the scanner namespace under the wrapper; (its figures, first probe)."""
    scanner_ns = lab.scanner_ns
    watch = _first_packet_watch(target_ns, str(lab.scanner_v4), limit + 30)
    try:
        done = subprocess.run(
            ["ip", "netns", "exec", scanner_ns, sys.executable, "-c", _WRAPPER, str(limit),
             str(out), *argv],
            capture_output=True, text=True, env=timed_env(PYTHONPATH=str(ROOT)), cwd=ROOT,
            check=True, timeout=limit + 120,
        )  # fmt: skip
        figures: dict[str, object] = json.loads(done.stdout)
        arrived = watch.communicate(timeout=limit + 60)[0].strip()
    finally:
        with contextlib.suppress(ProcessLookupError):
            watch.kill()
        watch.wait()
    if figures["status"] not in (0, None) and not figures["timed_out"]:
        raise RuntimeError(f"{argv[0]} failed: {figures['stderr']}")
    start = figures["start"]
    assert isinstance(start, float)
    first = None if arrived in ("", "none") else float(arrived) - start
    return figures, first


def open_from_grepable(text: str) -> set[tuple[str, int]]:
    found = set()
    for line in text.splitlines():
        if not line.startswith("Host:") or "Ports:" not in line:
            continue
        address = line.split()[1]
        ports_part = line.split("Ports:", 1)[1].partition("\t")[0]
        for entry in ports_part.split(","):
            fields = entry.strip().split("/")
            if len(fields) > 2 and fields[1] == "open" and fields[2] == "tcp":
                found.add((address, int(fields[0])))
    return found


def open_from_masscan_list(text: str) -> set[tuple[str, int]]:
    """masscan -oL lines: ``open tcp PORT ADDRESS TIMESTAMP``."""
    found = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0] == "open" and fields[1] == "tcp":
            found.add((fields[3], int(fields[2])))
    return found


@contextlib.contextmanager
def scale_lab(prefix: str) -> Iterator[tuple[Lab, AnyIPHost]]:
    """A fresh lab answering for ``prefix``, its upper half DROPped."""
    from tests.lab.anyip import add_anyip_host
    from tests.lab.core import Lab

    net = ipaddress.IPv4Network(prefix)
    upper = list(net.subnets(prefixlen_diff=1))[1]
    with Lab() as lab:
        yield lab, add_anyip_host(lab, prefix, ports=LISTENING, drop=[str(upper)])


def _tools(prefix: str, lab: Lab, net: AnyIPHost, tmp: str) -> dict[str, Tool]:
    """Each tool's command line, the file it writes its open ports to, and its reader."""
    return {
        "portlib": Tool(
            [sys.executable, "-m", "portlib", "scan", "-sS", "-n", "-p", PORTS, prefix,
             "-oG", f"{tmp}/portlib.gnmap"],
            Path(tmp, "portlib.gnmap"), open_from_grepable),
        "nmap": Tool(
            ["nmap", "-sS", "-T4", "-n", "-p", PORTS, prefix, "-oG", f"{tmp}/nmap.gnmap"],
            Path(tmp, "nmap.gnmap"), open_from_grepable),
        "masscan": Tool(
            ["masscan", "-p", PORTS, prefix, "--rate", str(MASSCAN_RATE), "--adapter", "br0",
             "--adapter-ip", str(lab.scanner_v4), "--router-ip", str(net.host.v4),
             "-oL", f"{tmp}/masscan.list"],
            Path(tmp, "masscan.list"), open_from_masscan_list),
    }  # fmt: skip


def measure_prefix(prefix: str, nmap_limit: float) -> list[Row]:
    # masscan 1.3.2 can go on "waiting -N secs" long after its --wait: bounded too.
    probes = ipaddress.IPv4Network(prefix).num_addresses * 100
    masscan_limit = probes / MASSCAN_RATE * 2 + MASSCAN_SLACK_S
    with scale_lab(prefix) as (lab, net), tempfile.TemporaryDirectory() as tmp:
        truth = net.open_ports(range(1, 101))
        runs: dict[str, ToolRun | str] = {}
        for name, tool in _tools(prefix, lab, net, tmp).items():
            missing = peer_missing(name) if name != "portlib" else None
            if missing:
                runs[name] = missing
                continue
            limit = {"nmap": nmap_limit, "masscan": masscan_limit}.get(name, 3600.0)
            stdout = Path(tmp, f"{name}-stdout.txt")
            figures, first = run_tool(lab, net.ns, tool.argv, stdout, limit)
            text = tool.output.read_text() if tool.output.exists() else ""
            runs[name] = ToolRun(
                float(str(figures["seconds"])),
                int(str(figures["rss_kib"])) / 1024,
                bool(figures["timed_out"]),
                limit,
                first,
                tool.read(text),
            )
            print(f"{prefix} {name}: {_describe(runs[name], truth)}", flush=True)
    return _rows(prefix, runs, truth)


def _describe(run: ToolRun | str, truth: set[tuple[str, int]]) -> str:
    if isinstance(run, str):
        return f"skipped: {run}"
    took = f"> {run.limit_s:.0f} s" if run.timed_out else f"{run.seconds:.1f} s"
    first = "" if run.first_probe_s is None else f", first probe {run.first_probe_s:.2f} s"
    return (
        f"{took}, {run.rss_mib:.0f} MiB{first}, missed {run.missed(truth)} of {len(truth)}"
        f" open, invented {run.invented(truth)}"
    )


def _figures(run: ToolRun, truth: set[tuple[str, int]]) -> dict[str, object]:
    return {
        "seconds": None if run.timed_out else round(run.seconds, 2),
        "time": f"> {run.limit_s:.0f} s" if run.timed_out else f"{run.seconds:.1f} s",
        "peak_rss_mib": round(run.rss_mib, 1),
        "first_probe_s": None if run.first_probe_s is None else round(run.first_probe_s, 3),
        "open_missed": run.missed(truth),
        "open_invented": run.invented(truth),
        "finished": not run.timed_out,
    }


def _rows(prefix: str, runs: dict[str, ToolRun | str], truth: set[tuple[str, int]]) -> list[Row]:
    portlib = runs["portlib"]
    assert isinstance(portlib, ToolRun)
    mine = _figures(portlib, truth)
    rows = []
    for peer, flags in (("nmap", "-sS -T4"), ("masscan", f"--rate {MASSCAN_RATE}, -Pn")):
        name = f"{prefix} x ports {PORTS}, SYN"
        run = runs[peer]
        if isinstance(run, str):
            rows.append(Row(name, peer, portlib.seconds, None, 1, skipped=run))
            continue
        theirs = _figures(run, truth)
        rows.append(
            Row(
                name,
                f"{peer} {flags}",
                portlib.seconds,
                None if run.timed_out else run.seconds,
                1,
                agreed=None if run.timed_out else run.open_found == portlib.open_found,
                detail={"open_truth": len(truth), "portlib": mine, peer: theirs},
            )
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_scale")
    parser.add_argument("--quick", action="store_true", help="a /24 and a /20, not a /20 and /15")
    parser.add_argument(
        "--nmap-limit", type=float, default=None, help="stop nmap after this many seconds"
    )
    args = parser.parse_args(argv)
    reason = skip_reason()
    if reason:
        write_results("scale", [Row("network scans", "nmap, masscan", None, None, 0,
                                    skipped=reason)])  # fmt: skip
        return 0
    limit = args.nmap_limit or (60.0 if args.quick else 240.0)
    rows: list[Row] = []
    for prefix in QUICK_PREFIXES if args.quick else FULL_PREFIXES:
        started = time.perf_counter()
        rows += measure_prefix(prefix, limit)
        print(f"{prefix}: measured in {time.perf_counter() - started:.0f} s", flush=True)
    write_results("scale", rows)
    wrong = [r for r in rows if r.detail and r.detail["portlib"]["open_missed"]]  # type: ignore[index]
    if wrong:
        print("portlib missed open ports: see results/scale.json")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
