"""The scan command's report files: -oX, -oG, -oN, -oA, --jsonl (writers and CLI)."""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from portlib.cli import outputs
from portlib.errors import PortlibError
from portlib.model import PortState
from portlib.output import load
from portlib.output import parse as parse_text
from portlib.output.grepable import to_grepable
from portlib.output.nmapxml import to_nmap_xml
from tests.report_samples import sample_report, verdicts
from tests.test_nmapxml import dtd_errors

REPO = Path(__file__).resolve().parent.parent


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--open", action="store_true")
    parser.add_argument("--reason", action="store_true")
    parser.add_argument("--json", action="store_true")
    outputs.add_output_arguments(parser)
    return parser.parse_args(argv)


# ---------------------------------------------------------------- the flags


def test_oa_expands_to_nmaps_three_suffixes() -> None:
    args = parse("-oA", "scans/mon", "-oX", "extra.xml")
    assert outputs.output_files(args) == [
        ("xml", "scans/mon.xml"),
        ("grepable", "scans/mon.gnmap"),
        ("normal", "scans/mon.nmap"),
        ("xml", "extra.xml"),
    ]
    assert not outputs.writes_stdout(args)
    assert outputs.writes_stdout(parse("-oG", "-"))
    assert outputs.writes_stdout(parse("--jsonl"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("-oX", "/nonexistent-dir/x.xml"), "directory /nonexistent-dir does not exist"),
        (("-oX", "{tmp}"), "it is a directory"),
        (("-oX", "-", "--jsonl"), "-oX and --jsonl would all write to stdout"),
        (("-oG", "-", "--json"), "-oG and --json would all write to stdout"),
        (("-oX", "{tmp}/a", "-oG", "{tmp}/a"), "is given for both -oX and -oG"),
        (("-oA", "{tmp}/b", "-oX", "{tmp}/b.xml"), "is given for both -oA and -oX"),
        (("-oA", "-"), "-oA needs a base file name"),
    ],
)
def test_bad_outputs_are_refused_before_scanning(
    argv: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    args = parse(*(a.replace("{tmp}", str(tmp_path)) for a in argv))
    with pytest.raises(PortlibError, match=message.replace("{tmp}", str(tmp_path))):
        outputs.check_outputs(args)


def test_unwritable_directory_is_refused() -> None:
    # Root may write anywhere, so as root the check runs in a child that became nobody.
    with tempfile.TemporaryDirectory() as top:
        os.chmod(top, 0o755)
        locked = Path(top) / "locked"
        locked.mkdir(mode=0o555)
        if os.geteuid() != 0:
            with pytest.raises(PortlibError, match="permission denied"):
                outputs.check_outputs(parse("-oX", str(locked / "x.xml")))
            return
        pid = os.fork()
        if pid == 0:  # child: exit 0 only if the check refused the path
            code = 1
            try:
                os.setgid(65534)
                os.setuid(65534)
                outputs.check_outputs(parse("-oX", str(locked / "x.xml")))
            except PortlibError as exc:
                code = 0 if "permission denied" in str(exc) else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


def test_good_outputs_pass_the_check(tmp_path: Path) -> None:
    outputs.check_outputs(parse("-oA", str(tmp_path / "base"), "--jsonl"))
    outputs.check_outputs(parse("-oX", "-"))


# ------------------------------------------------------------- the files


def test_oa_writes_all_three(tmp_path: Path) -> None:
    from portlib.output.normal import render_normal

    report = sample_report()
    base = tmp_path / "scan"
    written = outputs.write_outputs(report, parse("-oA", str(base)))
    assert written.failures == []
    assert written.paths == [f"{base}.xml", f"{base}.gnmap", f"{base}.nmap"]
    xml = Path(f"{base}.xml").read_text()
    assert xml == to_nmap_xml(report)
    assert dtd_errors(xml, tmp_path) == ""
    assert verdicts(load(f"{base}.xml")) == verdicts(report)
    assert Path(f"{base}.gnmap").read_text() == to_grepable(report)
    assert Path(f"{base}.nmap").read_text() == render_normal(report)


def test_dash_writes_to_stdout() -> None:
    out = io.StringIO()
    assert outputs.write_outputs(sample_report(), parse("-oG", "-"), out).paths == []
    assert out.getvalue() == to_grepable(sample_report())


def test_open_keeps_open_ports_in_files(tmp_path: Path) -> None:
    path = tmp_path / "open.xml"
    outputs.write_outputs(sample_report(), parse("--open", "-oX", str(path)))
    back = load(str(path))
    assert {(p.port, p.state) for h in back.hosts for p in h.ports} == {
        (22, PortState.OPEN),
        (80, PortState.OPEN),
        (53, PortState.OPEN_FILTERED),
    }
    assert [str(h.address) for h in back.hosts] == ["127.0.0.1"]


def test_write_failure_is_a_portlib_error(tmp_path: Path) -> None:
    target = tmp_path / "gone" / "x.xml"  # checked fine earlier, directory removed since
    written = outputs.write_outputs(sample_report(), parse("-oX", str(target)))
    assert written.paths == []
    (failure,) = written.failures
    assert isinstance(failure, PortlibError)
    assert str(failure).startswith(f"cannot write {target}")


def test_jsonl_hook_prints_one_verdict_per_line() -> None:
    assert outputs.jsonl_hook(parse()) is None
    out = io.StringIO()
    hook = outputs.jsonl_hook(parse("--jsonl"), out)
    assert hook is not None
    ports = sample_report().hosts[0].ports
    for p in ports:
        hook(p)
    lines = out.getvalue().splitlines()
    assert len(lines) == len(ports)
    first = json.loads(lines[0])
    assert first == {
        "host": "127.0.0.1",
        "port": ports[0].port,
        "protocol": "tcp",
        "state": "closed",
        "reason": "conn-refused",
        "rtt": 0.0001,
        "service": None,
        "detected": None,
    }
    out = io.StringIO()
    hook = outputs.jsonl_hook(parse("--jsonl", "--open"), out)
    assert hook is not None
    for p in ports:
        hook(p)
    assert [json.loads(line)["port"] for line in out.getvalue().splitlines()] == [22, 53, 80]


# -------------------------------------------------------- portlib scan, for real


def portlib_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "portlib", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.live
def test_scan_oa_and_jsonl(listener: int, tmp_path: Path) -> None:
    base = tmp_path / "loop"
    done = portlib_cli(
        "scan", "-Pn", "-p", f"1-40,{listener}", "127.0.0.1", "-oA", str(base), "--jsonl"
    )
    assert done.returncode == 0, done.stderr
    # stdout belongs to --jsonl: one verdict per line, no table
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 41
    assert {(d["port"], d["state"]) for d in lines if d["state"] == "open"} == {(listener, "open")}
    xml = Path(f"{base}.xml").read_text()
    assert dtd_errors(xml, tmp_path) == ""
    report = parse_text(xml)
    assert [p.port for p in report.open_ports()] == [listener]
    assert len(report.hosts[0].all_ports()) == 41
    assert f"Ports: {listener}/open/tcp/////\tIgnored State: closed (40)" in (
        Path(f"{base}.gnmap").read_text()
    )
    assert f"{listener}/tcp open" in Path(f"{base}.nmap").read_text()


@pytest.mark.live
def test_scan_ox_dash_is_the_only_stdout(listener: int) -> None:
    done = portlib_cli("scan", "-Pn", "-p", f"{listener}", "127.0.0.1", "-oX", "-")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('<?xml version="1.0"')
    assert [p.port for p in parse_text(done.stdout).open_ports()] == [listener]


def test_scan_with_bad_output_path_fails_in_one_line() -> None:
    done = portlib_cli("scan", "-Pn", "-p", "1", "127.0.0.1", "-oX", "/nonexistent-dir/x.xml")
    assert done.returncode == 2
    assert done.stderr == (
        "portlib: error: cannot write /nonexistent-dir/x.xml: "
        "directory /nonexistent-dir does not exist\n"
    )
    assert done.stdout == ""
