"""``portlib scan`` as nmap users type it: targets anywhere, nmap's timing flags and time
units, -F, -sL, -v, --stats-every, the banner first, nmap's warnings and errors, and
messages that name what is wrong instead of leaking Python internals."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from portlib.cli import main, parse_command
from portlib.cli.argtypes import duration
from portlib.cli.scan_cmd import scanner_from_args
from portlib.cli.scan_timing import timing_from_args
from portlib.output import parse
from portlib.scanning.timing import PRESETS
from tests.test_cli_outputs import portlib_cli

REPO = Path(__file__).resolve().parent.parent


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The one line a usage error prints (exit status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


# ------------------------------------------------------------- the command line


def test_targets_may_follow_and_surround_flags() -> None:
    args = parse_command(["scan", "127.0.0.1", "-p", "8000", "::1", "-Pn", "192.0.2.1"])
    assert args.targets == ["127.0.0.1", "::1", "192.0.2.1"]
    assert args.ports == "8000" and args.no_ping


@pytest.mark.live
def test_targets_after_flags_are_scanned(listener: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "127.0.0.1", "-p", str(listener), "::1", "-Pn"]) == 0
    out = capsys.readouterr().out
    assert "portlib scan report for 127.0.0.1\n" in out and "portlib scan report for ::1\n" in out
    assert f"{listener}/tcp open" in out


def test_an_unknown_flag_is_named_not_the_target_after_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = usage_error(capsys, "scan", "--max-retriez", "2", "localhost")
    assert "unrecognized arguments: --max-retriez" in err
    assert "localhost" not in err


@pytest.mark.parametrize("command", ["scan", "free", "diff", "service"])
def test_a_subcommands_unknown_flag_points_at_its_own_help(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = usage_error(capsys, command, "--no-such-flag", "x", "y")
    assert err.startswith(f"portlib {command}: error:")
    assert err.endswith(f"(see portlib {command} --help)\n")


def test_a_value_may_start_with_a_dash(capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(capsys, "scan", "--rate", "-5", "127.0.0.1")
    assert "--rate/--max-rate: must be more than 0, not -5" in err  # not "expected one argument"
    assert parse_command(["scan", "-p", "-1024", "h"]).ports == "-1024"  # ports 1-1024
    err = usage_error(capsys, "scan", "-p", "-sS", "h")  # a flag is not taken as a value
    assert "-p: expected one argument" in err


def test_scan_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["scan", "--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("portlib 0.")


# ---------------------------------------------------------------------- timing


def test_time_values_take_nmaps_units() -> None:
    assert [duration(t) for t in ("500ms", "5s", "2m", "1h", "0.25", "1.5S")] == [
        0.5,
        5.0,
        120.0,
        3600.0,
        0.25,
        1.5,
    ]
    for bad in ("5x", "ms", "-1s", "nan", "inf"):
        with pytest.raises(Exception, match=r"not a time|must be 0 or more"):
            duration(bad)


def test_timing_flags_set_the_profile_the_scanner_runs_with() -> None:
    args = parse_command(
        ["scan", "-T4", "--initial-rtt-timeout", "300ms", "--min-rtt-timeout", "50ms",
         "--max-rtt-timeout", "2s", "--max-retries", "1", "--scan-delay", "10ms",
         "--max-scan-delay", "1s", "--min-parallelism", "4", "--max-parallelism", "64",
         "--max-rate", "900", "--min-rate", "300", "--host-timeout", "2m", "127.0.0.1"]
    )  # fmt: skip
    scanner = scanner_from_args(args, "127.0.0.1", None)
    timing = scanner.timing
    assert timing.level == 4
    assert (timing.initial_rtt_timeout, timing.min_rtt_timeout, timing.max_rtt_timeout) == (
        0.3,
        0.05,
        2.0,
    )
    assert (timing.max_retries, timing.scan_delay, timing.max_scan_delay) == (1, 0.01, 1.0)
    assert (timing.min_parallelism, timing.max_parallelism, timing.rate) == (4, 64, 900.0)
    assert timing.min_rate == 300.0
    assert scanner.host_timeout == 120.0


def test_preset_values_make_room_for_the_users() -> None:
    args = parse_command(["scan", "--max-rtt-timeout", "100ms", "h"])
    timing = timing_from_args(args)  # -T3 starts at 1 s: pulled down to the maximum
    assert (timing.initial_rtt_timeout, timing.max_rtt_timeout) == (0.1, 0.1)
    args = parse_command(["scan", "-T2", "--min-parallelism", "8", "h"])
    assert timing_from_args(args).max_parallelism == 8  # -T2 serializes: lifted to 8
    assert timing_from_args(parse_command(["scan", "h"])) == PRESETS[3]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--min-rtt-timeout", "2s", "--max-rtt-timeout", "1s"], "--min-rtt-timeout 2s is more"),
        (["--scan-delay", "2s", "--max-scan-delay", "1s"], "--scan-delay 2s is more"),
        (["--min-parallelism", "9", "--max-parallelism", "3"], "--min-parallelism 9 is more"),
        (["--timeout", "1s", "--max-rtt-timeout", "2s"], "--timeout fixes the probe timeout"),
        (["--min-rate", "500", "--max-rate", "100"], "min_rate 500 is more than rate 100"),
    ],
)
def test_contradicting_timing_flags_are_one_line_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", *argv, "127.0.0.1"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# --------------------------------------------------------- -F, -sL, -v, -n/-R


def test_fast_mode_is_the_top_100_ports(capsys: pytest.CaptureFixture[str]) -> None:
    from portlib.services import top_ports

    scanner = scanner_from_args(parse_command(["scan", "-F", "h"]), "127.0.0.1", None)
    assert scanner.ports[next(iter(scanner.ports))] == tuple(top_ports(100, "tcp"))
    err = usage_error(capsys, "scan", "-F", "-p", "22", "h")
    assert "not allowed with" in err


@pytest.mark.live
def test_list_scan_lists_targets_and_sends_nothing(listener: int, tmp_path: Path) -> None:
    with socket.socket() as watched:
        watched.bind(("127.0.0.1", 0))
        watched.listen()
        watched.setblocking(False)
        done = portlib_cli(
            "scan", "-sL", "127.0.0.1", "192.0.2.0/31", "-oX", str(tmp_path / "list.xml")
        )
        with pytest.raises(BlockingIOError):
            watched.accept()  # nothing connected
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Starting portlib")
    assert lines[1:4] == [
        "portlib scan report for 127.0.0.1",
        "portlib scan report for 192.0.2.0",
        "portlib scan report for 192.0.2.1",
    ]
    assert lines[4].startswith("portlib done: 3 IP addresses (0 hosts up) scanned in")
    report = parse((tmp_path / "list.xml").read_text())
    assert [str(h.address) for h in report.hosts] == ["127.0.0.1", "192.0.2.0", "192.0.2.1"]
    assert all(not h.ports for h in report.hosts)


def test_list_scan_refuses_ports_and_other_scan_types(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "-sL", "-sS", "127.0.0.1"]) == 2
    assert "-sL lists targets and sends nothing" in capsys.readouterr().err
    assert main(["scan", "-sL", "-p", "22", "127.0.0.1"]) == 2
    assert "-sL scans no ports, so -p cannot go with it" in capsys.readouterr().err


def test_reverse_dns_names_the_address(capsys: pytest.CaptureFixture[str]) -> None:
    # 127.0.0.1 is in /etc/hosts, so the lookup never leaves the machine.
    assert main(["scan", "-sL", "-R", "127.0.0.1"]) == 0
    assert "portlib scan report for localhost (127.0.0.1)\n" in capsys.readouterr().out
    assert main(["scan", "-sL", "-n", "127.0.0.1"]) == 0
    assert "portlib scan report for 127.0.0.1\n" in capsys.readouterr().out


@pytest.mark.live
def test_verbose_prints_open_ports_as_found(listener: int) -> None:
    done = portlib_cli("scan", "-v", "-Pn", "-p", f"1,{listener}", "127.0.0.1")
    assert done.returncode == 0, done.stderr
    assert f"Discovered open port {listener}/tcp on 127.0.0.1\n" in done.stdout
    assert "Completed" not in done.stdout
    done = portlib_cli("scan", "-vv", "-Pn", "-p", f"1,{listener}", "127.0.0.1")
    assert "Completed Connect Scan of 1 hosts in" in done.stdout
    assert "2 verdicts, 1 open" in done.stdout


# ----------------------------------------------------------------- progress


@pytest.mark.live
def test_stats_every_prints_nmaps_status_lines() -> None:
    done = portlib_cli(
        "scan", "-Pn", "--rate", "200", "-p", "1-500", "--stats-every", "500ms", "127.0.0.1"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    stats = [line for line in lines if line.startswith("Stats: 0:00:0")]
    timing = [line for line in lines if line.startswith("Connect Scan Timing: About ")]
    assert stats and timing, done.stderr
    assert all(" elapsed; " in line for line in stats)
    assert any("% done; ETC: " in line and " remaining)" in line for line in timing)
    assert "Stats:" not in done.stdout


@pytest.mark.live
def test_the_banner_comes_first_while_the_scan_runs() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "portlib", "scan", "-Pn", "--rate", "50", "-p", "1-2000",
         "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "nothing on stdout"
        first = proc.stdout.readline()
        assert first.startswith("Starting portlib ")
        time.sleep(0.5)
        assert proc.poll() is None  # still scanning: the banner did not wait for the end
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    assert "Starting portlib" not in rest  # printed once


# ------------------------------------------------------ nmap's warnings, errors


@pytest.mark.live
def test_udp_ports_without_a_udp_scan_warn(listener: int) -> None:
    done = portlib_cli("scan", "-Pn", "-p", f"T:{listener},U:53", "127.0.0.1")
    assert done.returncode == 0
    assert done.stderr == (
        f"portlib: warning: -p T:{listener},U:53 includes UDP ports (U:) but no UDP scan"
        " (-sU) was asked for; they are not scanned\n"
    )
    assert f"{listener}/tcp open" in done.stdout and "53/udp" not in done.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-sn", "-p", "80"], "-sn scans no ports, so -p cannot go with it"),
        (["-sn", "--top-ports", "5"], "-sn scans no ports, so --top-ports/-F cannot go with it"),
        (["-p", "U:53"], "-p U:53 gives no TCP ports for the TCP scan (add -sU"),
        (["localhost:8000"], "'localhost:8000': a target takes no port; give ports with -p"),
        (["[::1]:22"], "a target takes no port"),
    ],
)
def test_what_nmap_refuses_is_one_line_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", *argv, *([] if ":" in argv[-1] else ["127.0.0.1"])]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1 and "PortList(" not in err and "parts expected" not in err


def test_p_given_twice_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(capsys, "scan", "-p", "22", "127.0.0.1", "-p", "80")
    assert "-p is given twice; give it once, with commas" in err


@pytest.mark.live
def test_bracketed_ipv6_targets_just_work(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "-Pn", "-p", "1", "[::1]"]) == 0
    assert "portlib scan report for ::1\n" in capsys.readouterr().out


@pytest.mark.live
@pytest.mark.skipif(os.geteuid() != 0, reason="-sS needs root")
def test_r_probes_ports_in_order() -> None:
    import json

    def order(*flags: str) -> list[int]:
        done = portlib_cli("scan", *flags, "-sS", "-Pn", "-p", "1-300", "127.0.0.1", "--jsonl")
        assert done.returncode == 0, done.stderr
        return [json.loads(line)["port"] for line in done.stdout.splitlines()]

    assert order("-r") == list(range(1, 301))
    shuffled = order()
    assert sorted(shuffled) == list(range(1, 301)) and shuffled != sorted(shuffled)


def test_e_names_an_interface_that_must_exist(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "-e", "nosuch0", "-p", "1", "127.0.0.1"]) == 2
    err = capsys.readouterr().err
    assert "no network interface named 'nosuch0'" in err and err.count("\n") == 1
