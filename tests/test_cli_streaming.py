"""``portlib scan`` writes its outputs host by host (issue 13): the -oX/-oG/-oN files
fill while the scan runs, an interrupted scan (SIGINT, SIGTERM) leaves them complete
and closed (DTD-valid nmap XML that python-libnmap reads), and ``--json`` folds the
closed majority as -oX does, unless ``--all-ports`` asks for every port.

Every scan runs in the lab's scanner namespace, against lab targets only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from portlib.model import PortState
from portlib.output import load
from tests.lab import Lab
from tests.lab.anyip import add_anyip_host
from tests.lab.netns import ns_argv
from tests.test_nmapxml import dtd_errors

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parent.parent
PREFIX = "198.18.0.0/26"  # 64 hosts
PORTS = "1-8192"  # 8192 ports a host: a host group of 16 hosts, so four groups
RATE = "60000"  # a group takes ~2 s: the files are read, and the signal lands, mid-scan


def portlib_in(lab: Lab, *argv: str, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ns_argv(lab.scanner_ns, [sys.executable, "-m", "portlib", *argv]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        **popen,  # type: ignore[call-overload]
    )


def host_counts(base: Path) -> tuple[int, int, int]:
    """Hosts written so far to BASE.xml, BASE.gnmap and BASE.nmap."""

    def read(suffix: str) -> str:
        path = Path(f"{base}{suffix}")
        return path.read_text() if path.exists() else ""

    return (
        read(".xml").count("<host "),
        len(re.findall(r"^Host: .*\tStatus: ", read(".gnmap"), re.M)),
        read(".nmap").count("portlib scan report for "),
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_files_fill_while_scanning_and_an_interrupt_closes_them(
    lab: Lab, tmp_path: Path, signum: signal.Signals
) -> None:
    add_anyip_host(lab, PREFIX)
    base = tmp_path / "scan"
    proc = portlib_in(lab, "scan", "-sS", "-Pn", "-p", PORTS, "--max-rate", RATE, PREFIX,
                      "-oA", str(base))  # fmt: skip
    seen: list[tuple[int, int, int]] = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            counts = host_counts(base)
            if not seen or counts != seen[-1]:
                seen.append(counts)
            if len({c for c in seen if min(c) > 0}) >= 2:
                break  # two different host counts in every file, while the scan runs
            time.sleep(0.1)
        assert proc.poll() is None, "the scan ended before its files grew twice"
        proc.send_signal(signum)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    growing = [c for c in seen if min(c) > 0]
    assert growing[0][0] < growing[-1][0] < 64, seen

    xml = Path(f"{base}.xml").read_text()
    assert dtd_errors(xml, tmp_path) == ""
    assert xml.rstrip().endswith("</nmaprun>")
    assert 'exit="error"' in xml
    report = load(f"{base}.xml")
    assert report.interrupted
    written = len(report.hosts)
    assert growing[-1][0] <= written < 64
    assert f'total="{written}"' in xml  # runstats count what the file holds
    finished = growing[-1][0]  # hosts whose group had finished when the files were read
    for host in report.hosts[:finished]:
        assert host.state_counts() == {PortState.OPEN: 3, PortState.CLOSED: 8189}
    for host in report.hosts:  # those in progress have what they had (maybe nothing yet)
        assert len(host.ports) <= 3  # the closed majority is folded, not listed
    libnmap = pytest.importorskip("libnmap.parser")
    parsed = libnmap.NmapParser.parse_fromstring(xml)
    assert len(parsed.hosts) == written and parsed.hosts_total == written
    gnmap = Path(f"{base}.gnmap").read_text()
    assert gnmap.rstrip().endswith("(interrupted)")
    assert host_counts(base) == (written, written, written)
    normal = Path(f"{base}.nmap").read_text()
    assert "WARNING: the scan was interrupted" in normal and "portlib done:" in normal


def test_json_of_every_port_of_one_host_is_a_few_kilobytes(lab: Lab) -> None:
    target = lab.add_host("t1")
    target.serve_tcp([22, 80, 443])
    argv = ["scan", "-Pn", "-p-", "--json", str(target.v4)]
    proc = portlib_in(lab, *argv)
    folded_text, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    size = len(folded_text.encode())
    assert size < 8_000, size
    doc = json.loads(folded_text)
    (host,) = doc["hosts"]
    assert [(p["port"], p["state"]) for p in host["ports"]] == [
        (22, "open"), (80, "open"), (443, "open")
    ]  # fmt: skip
    (closed,) = host["extra_ports"]
    assert closed["state"] == "closed"
    assert closed["reasons"][0]["ranges"] == [[1, 21], [23, 79], [81, 442], [444, 65535]]

    proc = portlib_in(lab, *argv, "--all-ports")
    every_text, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    (host,) = json.loads(every_text)["hosts"]
    assert len(host["ports"]) == 65535 and host["extra_ports"] == []
    print(f"--json -p- of one host: {size} bytes folded, {len(every_text.encode())} --all-ports")
