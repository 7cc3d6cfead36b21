"""``portlib merge`` of shard files from separate ``portlib scan --shard I/N`` runs equals
the unsharded scan and the lab's ground truth (an AnyIP /25: 22 open, 80 closed, the
top /27 REJECTed: filtered), and the shards together send each probe once."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import portlib
from portlib.model import ScanReport
from tests.lab import Lab
from tests.lab.anyip import AnyIPHost, add_anyip_host

pytestmark = pytest.mark.lab

PREFIX = "198.18.1.0/25"
SCANNED = "22,80"
PROBES = 128 * 2
SCAN = [sys.executable, "-m", "portlib", "scan", "-Pn", "-sS", "-p", SCANNED, "--seed", "11",
        "--max-rate", "1000", "--timeout", "2s", PREFIX]  # fmt: skip


def verdicts(report: ScanReport) -> dict[tuple[str, int], str]:
    found = {(str(p.host), p.port): p.state.value for h in report.hosts for p in h.all_ports()}
    assert len(found) == sum(len(h.all_ports()) for h in report.hosts), "a verdict twice"
    return found


@pytest.fixture
def target(lab: Lab) -> AnyIPHost:
    net = add_anyip_host(lab, PREFIX, ports=[22], reject=["198.18.1.96/27"])
    net.host.iptables("-I", "INPUT", "1", "-p", "tcp", "--syn", "-d", PREFIX)
    return net


def syn_count(target: AnyIPHost) -> int:
    out = target.host.iptables("-L", "INPUT", "1", "-v", "-n", "-x").stdout
    return int(out.strip().splitlines()[-1].split()[0])


def test_merged_shard_files_equal_the_unsharded_scan(lab: Lab, target: AnyIPHost) -> None:
    files = [Path(lab.dir) / name for name in ("part1.xml", "part2.json", "part3.xml")]
    for index, path in enumerate(files, start=1):
        output = ["--json"] if path.suffix == ".json" else ["-oX", "-"]
        done = lab.exec([*SCAN, "--shard", f"{index}/3", *output], timeout=120)
        path.write_text(done.stdout)
    sharded_syns = syn_count(target)
    merged_file = Path(lab.dir) / "merged.xml"
    lab.exec([sys.executable, "-m", "portlib", "merge", *map(str, files), "-oX", str(merged_file)])
    merged = portlib.load_report(str(merged_file))
    whole = portlib.parse_report(lab.exec([*SCAN, "-oX", "-"], timeout=120).stdout)
    assert sharded_syns == PROBES  # three runs, each probe in exactly one of them
    assert syn_count(target) == 2 * PROBES
    truth = {(str(a), p): s for (a, p), s in target.truth([22, 80], discovery=False).items()}
    assert verdicts(merged) == truth
    assert verdicts(merged) == verdicts(whole)
    assert [h.address for h in merged.hosts] == [h.address for h in whole.hosts]
    assert all(len(verdicts(portlib.load_report(str(f)))) < PROBES for f in files)
