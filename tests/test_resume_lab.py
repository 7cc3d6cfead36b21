"""``portlib scan --resume FILE``: a SYN scan of an AnyIP /17 (half of it down)
stopped by SIGINT, SIGTERM or SIGKILL, and twice in a row, then resumed, ends with the
report of an uninterrupted scan; the SYNs the target received (an iptables counter)
exceed the uninterrupted scan's by no more than the group in progress, the discovery
running ahead of it and, after a SIGKILL, the groups finished since the last save."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from portlib.model import ScanReport
from portlib.output import load
from portlib.scanning.checkpoint import SAVE_EVERY_S, load_checkpoint
from portlib.scanning.pipeline import DISCOVERY_AHEAD
from tests.lab import netns
from tests.lab.anyip import AnyIPHost, SynCounter, add_anyip_host
from tests.lab.core import Lab
from tests.lab.procs import python_env

pytestmark = pytest.mark.lab

PREFIX = "198.18.0.0/17"
DOWN = "198.18.64.0/18"
PORTS = "22,80,443"
RATE = "20000"  # slow enough to interrupt a few seconds in, fast enough for CI
DISCOVERY_ROUNDS = 2  # a silent host gets its discovery probes at most this often


@pytest.fixture(scope="module")
def target(module_lab: Lab) -> AnyIPHost:
    return add_anyip_host(module_lab, PREFIX, ports=(22, 80, 443), drop=[DOWN])


@pytest.fixture(scope="module")
def syns(target: AnyIPHost) -> SynCounter:
    counter = SynCounter(target)
    counter.install()
    return counter


def scan_argv(out: Path, checkpoint: Path) -> list[str]:
    return [sys.executable, "-m", "portlib", "scan", "-sS", "-n", "-p", PORTS,
            "--max-rate", RATE, PREFIX, "-oX", str(out), "--resume", str(checkpoint)]  # fmt: skip


def resume_argv(checkpoint: Path) -> list[str]:
    return [sys.executable, "-m", "portlib", "scan", "--resume", str(checkpoint)]


def verdicts(report: ScanReport) -> dict[str, tuple[str, tuple[tuple[int, str, str], ...]]]:
    return {
        str(h.address): (
            h.state.value,
            tuple((p.port, p.state.value, p.reason.value) for p in h.all_ports()),
        )
        for h in report.hosts
    }


@pytest.fixture(scope="module")
def uninterrupted(
    module_lab: Lab, syns: SynCounter, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ScanReport, int, float, int]:
    """The scan run to its end: its report, the SYNs it sent, its time, its group size."""
    tmp = tmp_path_factory.mktemp("whole")
    syns.reset()
    started = time.monotonic()
    module_lab.exec(scan_argv(tmp / "whole.xml", tmp / "whole.resume"), timeout=600)
    seconds = time.monotonic() - started
    group_hosts = load_checkpoint(str(tmp / "whole.resume")).group_hosts
    return load(tmp / "whole.xml"), syns.count(), seconds, group_hosts


def interrupt(lab: Lab, argv: list[str], checkpoint: Path, signum: int) -> None:
    """Start ``argv`` in the scanner namespace; once the checkpoint holds a group more
    than it did, send ``signum`` and wait for the scan to end."""
    before = _groups_saved(checkpoint)
    proc = subprocess.Popen(
        netns.ns_argv(lab.scanner_ns, argv),
        env=python_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while _groups_saved(checkpoint) <= before:
            assert proc.poll() is None, f"the scan ended before it could be stopped: {proc.stderr}"
            assert time.monotonic() < deadline, "no group was saved in two minutes"
            time.sleep(0.05)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    expected = {signal.SIGINT: 130, signal.SIGTERM: 128 + signal.SIGTERM, signal.SIGKILL: -9}
    assert proc.returncode == expected[signum], err


def _groups_saved(checkpoint: Path) -> int:
    try:
        return load_checkpoint(str(checkpoint)).groups_done
    except Exception:  # not there yet, or only its header half-written
        return -1


@pytest.mark.parametrize(
    "signals",
    [[signal.SIGINT], [signal.SIGTERM], [signal.SIGKILL], [signal.SIGINT, signal.SIGTERM]],
    ids=["sigint", "sigterm", "sigkill", "twice"],
)
def test_a_resumed_scan_ends_as_an_uninterrupted_one(
    module_lab: Lab,
    syns: SynCounter,
    uninterrupted: tuple[ScanReport, int, float, int],
    tmp_path: Path,
    signals: list[int],
) -> None:
    whole, whole_syns, whole_seconds, group_hosts = uninterrupted
    out, checkpoint = tmp_path / "scan.xml", tmp_path / "scan.resume"
    syns.reset()
    interrupt(module_lab, scan_argv(out, checkpoint), checkpoint, signals[0])
    for signum in signals[1:]:
        interrupt(module_lab, resume_argv(checkpoint), checkpoint, signum)
    module_lab.exec(resume_argv(checkpoint), timeout=600)
    resumed = load(out)
    assert not resumed.interrupted
    assert verdicts(resumed) == verdicts(whole)
    again = syns.count() - whole_syns
    # Each stop repeats at most: the group in progress (at most 1% of the probes), the
    # discovery of the groups running ahead of it, and after a SIGKILL what was
    # finished since the last save (SAVE_EVERY_S of scanning at the whole scan's pace).
    per_stop = 0.01 * whole_syns + DISCOVERY_AHEAD * group_hosts * DISCOVERY_ROUNDS
    killed = signals.count(signal.SIGKILL) * whole_syns / whole_seconds * SAVE_EVERY_S
    print(f"{signals}: {again} SYNs again of {whole_syns} ({again / whole_syns:.2%})")
    assert 0 <= again <= len(signals) * per_stop + killed
