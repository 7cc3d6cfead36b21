"""Shared helpers for the benchmarks: timing by medians, peer checks, result files.

Every benchmark module ``benchmarks/bench_*.py`` has ``main(argv) -> int`` and
records its rows with :func:`write_results`, so ``python -m benchmarks`` can run
them all and build one table. A row compares portlib with one peer on the same
work in the same run; the ratio is portlib's median over the peer's median.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    """One portlib-versus-peer comparison. ``target`` is the issue's ratio limit."""

    benchmark: str
    peer: str
    portlib_median_s: float | None
    peer_median_s: float | None
    runs: int
    target_ratio: float | None = None
    agreed: bool | None = None  # did both sides find the same answer?
    detail: dict[str, object] = field(default_factory=dict)
    skipped: str | None = None  # why, when the peer (or the lab) is missing

    @property
    def ratio(self) -> float | None:
        if self.portlib_median_s is None or not self.peer_median_s:
            return None
        return self.portlib_median_s / self.peer_median_s

    @property
    def met(self) -> bool | None:
        if self.ratio is None or self.target_ratio is None:
            return None
        return self.ratio <= self.target_ratio and self.agreed is not False


def median_seconds(action: Callable[[], object], runs: int, warmup: int = 1) -> float:
    """Median wall time of ``action()`` over ``runs`` runs, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        action()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


Answer = TypeVar("Answer")


def interleaved_runs(
    portlib_side: Callable[[], Answer],
    peer_side: Callable[[], Answer],
    runs: int,
    *,
    warmup: bool = True,
) -> tuple[list[float], list[float], list[Answer], list[Answer]]:
    """Time both sides run by run, alternating, so load from elsewhere hits both alike.

    Returns (portlib seconds, peer seconds, portlib answers, peer answers).
    """
    p_samples: list[float] = []
    n_samples: list[float] = []
    p_answers: list[Answer] = []
    n_answers: list[Answer] = []
    if warmup:
        portlib_side()
        peer_side()
    for _ in range(runs):
        for side, samples, answers in (
            (portlib_side, p_samples, p_answers),
            (peer_side, n_samples, n_answers),
        ):
            start = time.perf_counter()
            answers.append(side())
            samples.append(time.perf_counter() - start)
    return p_samples, n_samples, p_answers, n_answers


def run_command(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a peer (or portlib's CLI) and capture its output as text."""
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, env=timed_env())


def peer_missing(binary: str) -> str | None:
    """The reason to skip a peer, or None when ``binary`` is on PATH."""
    if shutil.which(binary) is None:
        return f"{binary} is not installed (apt-get install {binary})"
    return None


def lab_skip_reason() -> str | None:
    """Why a lab benchmark against nmap cannot run here, or None when it can."""
    missing = peer_missing("nmap")
    if missing:
        return missing
    sys.path.insert(0, str(ROOT))
    from tests.lab import lab_available

    return lab_available()


def timed_env(**extra: str) -> dict[str, str]:
    """The environment of a timed run: this one, but Python may cache bytecode.

    An installed package has its .pyc files; with PYTHONDONTWRITEBYTECODE set
    (as in some sandboxes and CI images) every run of a checkout would compile
    each changed module again, timing the compiler instead of the scan.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def netns_exec(ns: str, argv: Sequence[str], timeout: float = 900) -> str:
    """Run ``argv`` in network namespace ``ns`` with this checkout importable; its stdout."""
    env = timed_env(PYTHONPATH=str(ROOT))
    done = subprocess.run(
        ["ip", "netns", "exec", ns, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed in {ns}: {done.stderr.strip()[-2000:]}")
    return done.stdout


_LISTENER_SNIPPET = """
import socket, sys, threading
tcp, udp = sys.argv[1].split(","), sys.argv[2].split(",")
held = []
for port in filter(None, tcp):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(port))); s.listen(64); held.append(s)
def echo(s):
    while True:
        data, peer = s.recvfrom(4096)
        s.sendto(data or b"x", peer)
for port in filter(None, udp):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", int(port)))
    threading.Thread(target=echo, args=(s,), daemon=True).start()
print("READY", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def loopback_listeners(ns: str, tcp: Sequence[int], udp: Sequence[int] = ()) -> Iterator[None]:
    """TCP listeners and UDP echo servers on 127.0.0.1 inside ``ns`` while the block runs."""
    holder = subprocess.Popen(
        [
            *("ip", "netns", "exec", ns, sys.executable, "-c", _LISTENER_SNIPPET),
            ",".join(map(str, tcp)),
            ",".join(map(str, udp)),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if holder.stdout is None or not holder.stdout.readline().startswith("READY"):
            raise RuntimeError("the loopback listeners did not start")
        yield
    finally:
        if holder.stdin is not None:
            holder.stdin.close()
        holder.wait(timeout=10)


def write_results(name: str, rows: list[Row]) -> Path:
    """Write ``results/NAME.json`` and print a Markdown table of the rows."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = [asdict(r) | {"ratio": r.ratio, "met": r.met} for r in rows]
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(markdown_table(rows))
    return path


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| benchmark | peer | portlib (s) | peer (s) | ratio | target | same answer |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        if r.skipped:
            lines.append(f"| {r.benchmark} | {r.peer} | skipped: {r.skipped} | | | | |")
            continue
        lines.append(
            f"| {r.benchmark} | {r.peer} | {_fmt(r.portlib_median_s)} | {_fmt(r.peer_median_s)}"
            f" | {_fmt(r.ratio, 2)} | {_fmt(r.target_ratio, 2)} | {_yes_no(r.agreed)} |"
        )
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _yes_no(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "NO")
