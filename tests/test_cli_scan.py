"""``portlib scan``: nmap's flags parse as nmap users type them; output and errors."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from portlib.cli import build_parser, main
from portlib.cli.progress import ProgressLine
from portlib.cli.scan_cmd import methods_from_args, ports_from_args

REPO = Path(__file__).resolve().parent.parent


def parse(*argv: str):
    return build_parser().parse_args(["scan", *argv])


def test_nmap_style_flags_parse() -> None:
    args = parse("-sS", "-sU", "-T4", "-p-", "-Pn", "--open", "192.0.2.1")
    assert methods_from_args(args) == ["syn", "udp"]
    assert args.timing == 4
    assert args.ports == "-"
    assert args.no_ping and args.open
    assert args.targets == ["192.0.2.1"]
    args = parse("-p22,80", "-T", "aggressive", "-sn", "-6", "-iL", "f.txt", "--shard", "2/4")
    assert args.ports == "22,80"
    assert args.timing == 4
    assert methods_from_args(args) == ["ping"]
    assert args.family == 6 and args.input_file == "f.txt" and args.shard == "2/4"
    args = parse("-p", "T:80,U:53", "--rate", "500", "--timeout", "0.5", "--retries", "0", "x")
    assert (args.rate, args.timeout, args.retries) == (500.0, 0.5, 0)
    assert methods_from_args(parse("h")) == ["connect"]


def test_top_ports_gives_each_protocol_its_own_ranking() -> None:
    from portlib.services import top_ports

    args = parse("-sS", "-sU", "--top-ports", "10", "h")
    ports = ports_from_args(args, methods_from_args(args))
    assert ports.tcp == top_ports(10, "tcp")
    assert ports.udp == top_ports(10, "udp")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-sX", "h"], "unknown scan type -sX"),
        (["-T9", "h"], "timing must be 0-5"),
        (["-p", "1", "--top-ports", "5", "h"], "not allowed with argument"),
        (["--rate", "0", "h"], "must be more than 0"),
        (["--retries=-1", "h"], "must be 0 or more"),
        (["-4", "-6", "h"], "not allowed with argument"),
    ],
)
def test_bad_flags_are_one_line_exit_2(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["scan", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-p", "70000", "127.0.0.1"], "70000"),
        (["-p", "10-5", "127.0.0.1"], "10-5"),
        (["300.1.1.1"], "300.1.1.1"),
        ([], "no targets given"),
        (["-sT", "-sS", "127.0.0.1"], "only one TCP method"),
        (["-sn", "-sT", "127.0.0.1"], "cannot be combined"),
        (["--shard", "5/4", "127.0.0.1"], "shards are numbered 1 to 4"),
        (["-sU", "-p", "T:80", "127.0.0.1"], "no UDP ports"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, message, capsys) -> None:
    assert main(["scan", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("portlib: error: ") and err.count("\n") == 1


def test_progress_line_text_is_pure() -> None:
    assert ProgressLine.text(0, 0, 1.0) == "discovering hosts..."
    assert ProgressLine.text(500, 1000, 2.0) == "500/1000 ports (50.0%), 250 ports/s, ETA 0:00:02"
    # nmap's clock notation on a terminal, not a count of seconds
    assert ProgressLine.text(1, 23770, 1.0).endswith("ETA 6:36:09")
    out = io.StringIO()
    now = [0.0]
    line = ProgressLine(out, clock=lambda: now[0])
    now[0] = 1.0
    line(10, 100)
    now[0] = 1.05
    line(11, 100)  # too soon to redraw
    line(100, 100)  # the end is always drawn
    line.clear()
    assert out.getvalue().count("\r") == 4
    assert "10/100 ports" in out.getvalue() and "11/100" not in out.getvalue()


@pytest.fixture
def listeners():
    """Two listening TCP ports on 127.0.0.1 and one closed port."""
    socks = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        socks.append(s)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    yield [s.getsockname()[1] for s in socks], closed
    for s in socks:
        s.close()


@pytest.mark.live
def test_human_table_on_loopback(listeners, capsys) -> None:
    (p1, p2), closed = listeners
    assert main(["scan", "-p", f"{p1},{p2},{closed}", "localhost"]) == 0
    out = capsys.readouterr().out
    assert "portlib scan report for localhost (127.0.0.1)\n" in out
    assert "Host is up (" in out
    lines = out.splitlines()
    header = (
        lines.index("PORT      STATE  SERVICE") if "PORT      STATE  SERVICE" in lines else None
    )
    assert header is not None, out
    rows = {line.split()[0]: line.split()[1] for line in lines[header + 1 :] if "/tcp" in line}
    assert rows == {f"{p1}/tcp": "open", f"{p2}/tcp": "open", f"{closed}/tcp": "closed"}
    assert "portlib done: 1 IP address (1 host up) scanned in" in out


@pytest.mark.live
def test_json_and_open_only(listeners, capsys) -> None:
    (p1, _), closed = listeners
    assert main(["scan", "--json", "--open", "-Pn", "-p", f"{p1},{closed}", "127.0.0.1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (host,) = doc["hosts"]
    assert host["state"] == "up" and host["reason"] == "user-set"
    assert [(p["port"], p["state"], p["reason"]) for p in host["ports"]] == [
        (p1, "open", "syn-ack")
    ]
    assert doc["method"] == "connect" and doc["interrupted"] is False


@pytest.mark.live
def test_ping_scan_lists_hosts(capsys) -> None:
    assert main(["scan", "-sn", "127.0.0.1", "::1"]) == 0
    out = capsys.readouterr().out
    assert "portlib scan report for 127.0.0.1\nHost is up." in out
    assert "portlib scan report for ::1\nHost is up." in out
    assert "PORT" not in out
    assert "2 IP addresses (2 hosts up)" in out


@pytest.mark.live
def test_ctrl_c_prints_partial_report_and_exits_130(tmp_path) -> None:
    # A slow scan (rate-capped) of a closed range, interrupted after it started.
    proc = subprocess.Popen(
        [sys.executable, "-m", "portlib", "scan", "-Pn", "--rate", "50", "-p", "1-2000",
         "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "WARNING: the scan was interrupted" in out
    assert "portlib scan report for 127.0.0.1" in out
    assert "Traceback" not in err


@pytest.mark.live
def test_progress_line_only_on_a_terminal() -> None:
    import pty

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "portlib", "scan", "-Pn", "--rate", "3000", "-p", "1-3000",
            "127.0.0.1"]  # fmt: skip
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=follower, cwd=REPO, env=env,
                              timeout=60, text=True)  # fmt: skip
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    on_tty = b"".join(chunks).decode()
    assert done.returncode == 0
    assert "\r" in on_tty and "ports/s" in on_tty and "ETA" in on_tty
    assert "ports/s" not in done.stdout
    piped = subprocess.run(argv, capture_output=True, cwd=REPO, env=env, timeout=60, text=True)
    assert piped.returncode == 0 and piped.stderr == ""


@pytest.mark.live
def test_input_file_exclusions_and_family(tmp_path, capsys) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_text("127.0.0.1\n127.0.0.2\n::1\n")
    excluded = tmp_path / "exclude.txt"
    excluded.write_text("127.0.0.2\n")
    argv = ["scan", "--json", "-sn", "-iL", str(targets), "--excludefile", str(excluded)]
    assert main([*argv, "--exclude", "::1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [h["address"] for h in doc["hosts"]] == ["127.0.0.1"]
    # -6 with IPv4 addresses in the file is an error (as in nmap), before any probe.
    assert main([*argv, "-6"]) == 2
    assert "family=6" in capsys.readouterr().err
    targets.write_text("::1\n")
    assert main([*argv, "-6"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [h["address"] for h in doc["hosts"]] == ["::1"]
