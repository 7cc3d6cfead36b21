"""SIGTERM and SIGHUP end a scan as Ctrl-C does: the partial report is printed and every
output file is written whole, so ``timeout 60 portlib scan ...`` keeps what it found."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from portlib.output import load
from tests.test_nmapxml import dtd_errors

REPO = Path(__file__).resolve().parent.parent
SLOW_SCAN = ["scan", "-Pn", "--rate", "50", "-p", "1-2000", "127.0.0.1"]  # ~40 s if left alone


def start(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "portlib", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def assert_partial_outputs(base: Path, tmp_path: Path) -> None:
    xml = Path(f"{base}.xml").read_text()
    assert dtd_errors(xml, tmp_path) == ""
    report = load(f"{base}.xml")
    assert report.interrupted
    assert 0 < len(report.hosts[0].all_ports()) < 2000  # what was decided before the signal
    assert Path(f"{base}.gnmap").read_text().rstrip().endswith("(interrupted)")
    assert "WARNING: the scan was interrupted" in Path(f"{base}.nmap").read_text()


@pytest.mark.live
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_gives_the_partial_report_and_every_file(
    signum: signal.Signals, tmp_path: Path
) -> None:
    base = tmp_path / "scan"
    proc = start(*SLOW_SCAN, "-oA", str(base))
    time.sleep(2.5)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, err
    assert "WARNING: the scan was interrupted" in out
    assert "portlib scan report for 127.0.0.1" in out
    assert "Traceback" not in err
    assert_partial_outputs(base, tmp_path)


@pytest.mark.live
def test_timeout_keeps_what_the_scan_found(tmp_path: Path) -> None:
    if shutil.which("timeout") is None:
        pytest.skip("coreutils' timeout is not installed")
    base = tmp_path / "scan"
    done = subprocess.run(
        ["timeout", "3", sys.executable, "-m", "portlib", *SLOW_SCAN, "-oA", str(base)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 124  # timeout's own status: it had to send SIGTERM
    assert "portlib scan report for 127.0.0.1" in done.stdout
    assert_partial_outputs(base, tmp_path)


def test_the_previous_handlers_come_back_after_the_scan() -> None:
    from portlib.cli.scan_cmd import STOP_SIGNALS, stop_signals_interrupt

    before = [signal.getsignal(s) for s in STOP_SIGNALS]
    with stop_signals_interrupt() as received:
        assert all(signal.getsignal(s) not in (signal.SIG_DFL, None) for s in STOP_SIGNALS)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs between bytecodes; it raises before this ends
        assert received == [signal.SIGTERM]
    assert [signal.getsignal(s) for s in STOP_SIGNALS] == before
