"""Checkpoints (portlib.scanning.checkpoint) and ``--resume`` without a network: the
file's records, a torn tail, damaged files, and the CLI's checks. The lab test
(test_resume_lab.py) interrupts and resumes real scans."""

from __future__ import annotations

import datetime as _dt
from ipaddress import ip_address
from pathlib import Path

import pytest

from portlib.cli import main
from portlib.cli.resume import without_resume
from portlib.errors import ScanError
from portlib.model import HostResult, HostState, PortResult, PortState, Protocol, Reason
from portlib.scanning.checkpoint import CheckpointWriter, load_checkpoint, resumed_seed
from portlib.scanning.groups import checkpointed_group_size, group_size
from portlib.scanning.options import SavedScan

STARTED = _dt.datetime(2026, 12, 1, 12, 0, tzinfo=_dt.UTC)


def host(n: int) -> HostResult:
    address = ip_address(f"192.0.2.{n}")
    port = PortResult(address, 22, Protocol.TCP, PortState.OPEN, Reason.SYN_ACK)
    return HostResult(address, None, HostState.UP, Reason.ECHO_REPLY, (port,))


def write(path: Path, groups: int) -> None:
    writer = CheckpointWriter(str(path), argv=("portlib", "scan", "-p", "22", "192.0.2.0/29"),
                              seed=7, group_hosts=2, started=STARTED)  # fmt: skip
    for index in range(groups):
        writer.group_done(index, [host(2 * index + 1), host(2 * index + 2)], 10 * index, index)
    writer.close()


def test_records_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "scan.resume"
    write(path, 3)
    saved = load_checkpoint(str(path))
    assert (saved.seed, saved.group_hosts, saved.groups_done) == (7, 2, 3)
    assert saved.hosts == tuple(host(n) for n in range(1, 7))
    assert (saved.probes_sent, saved.elapsed, saved.started) == (20, 2.0, STARTED)
    assert saved.argv[:2] == ("portlib", "scan")


def test_a_torn_tail_is_skipped_and_cut_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "scan.resume"
    write(path, 2)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 25])  # killed in the middle of the last save
    saved = load_checkpoint(str(path))
    assert saved.groups_done == 1 and saved.hosts == (host(1), host(2))
    writer = CheckpointWriter(str(path), argv=(), seed=7, group_hosts=2, started=STARTED,
                              resumed=saved)  # fmt: skip
    writer.group_done(1, [host(3), host(4)], 30, 1.5)
    writer.close()
    again = load_checkpoint(str(path))
    assert again.groups_done == 2 and again.hosts[-1] == host(4) and again.probes_sent == 30


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a portlib checkpoint"),
        ('{"format": "portlib-checkpoint", "version": 99}\n', "another portlib version"),
        ('{"format": "portlib-checkpoint", "version": 1, "argv": []}\n', "header is damaged"),
        ("<nmaprun/>", "not a portlib checkpoint"),
    ],
)
def test_damaged_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.resume"
    path.write_text(text)
    with pytest.raises(ScanError, match=message):
        load_checkpoint(str(path))


def test_the_seed_is_the_saved_one() -> None:
    saved = SavedScan(("portlib", "scan"), 7, 2, STARTED, 0, (), 0, 0.0)
    assert resumed_seed(None, saved) == 7 and resumed_seed(7, saved) == 7
    assert resumed_seed(5, None) == 5
    with pytest.raises(ScanError, match="seed 7, not 5"):
        resumed_seed(5, saved)


def test_checkpointed_groups_are_at_most_one_percent() -> None:
    assert checkpointed_group_size(3, 32768 * 3) == 327
    assert checkpointed_group_size(65535, 65535) == 1
    assert checkpointed_group_size(100, 10**9) == group_size(100)


def test_cli_resume_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert without_resume(["-p", "22", "--resume", "x", "h", "--resume=y"]) == ["-p", "22", "h"]
    path = tmp_path / "scan.resume"
    write(path, 1)
    assert main(["scan", "-p", "80", "--resume", str(path)]) == 2
    assert "takes no other scan options" in capsys.readouterr().err
    other = tmp_path / "notes.txt"
    other.write_text("my notes\n")
    assert main(["scan", "--resume", str(other)]) == 2  # never overwritten
    assert "not a portlib checkpoint" in capsys.readouterr().err
    assert other.read_text() == "my notes\n"
    assert main(["scan", "-sL", "192.0.2.1", "--resume", str(tmp_path / "new")]) == 2
    assert "not with -sL" in capsys.readouterr().err


def test_cli_resume_of_a_finished_loopback_scan(tmp_path: Path) -> None:
    """A checkpoint of a finished scan: resuming probes nothing and writes the same
    report (to a second file: the saved flags are edited to name it)."""
    from portlib.output import load

    path, first, second = tmp_path / "s.resume", tmp_path / "a.json", tmp_path / "b.json"
    assert main(["scan", "-p", "1-30", "127.0.0.1", "--resume", str(path),
                 "--json", "-oX", str(first)]) == 0  # fmt: skip
    saved = load_checkpoint(str(path))
    assert saved.groups_done == 1 and len(saved.hosts) == 1
    path.write_text(path.read_text().replace(str(first), str(second)))
    assert main(["scan", "--resume", str(path)]) == 0
    a, b = load(first), load(second)
    assert [h.all_ports() for h in a.hosts] == [h.all_ports() for h in b.hosts]
    assert b.probes_sent == a.probes_sent  # nothing was probed again
