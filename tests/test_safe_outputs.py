"""Writing -oX/-oG/-oN/-oA: every output is written even when one fails, an old report
survives a failed write, and a symlink planted in a shared directory redirects nothing.

Full disks are real: /dev/full, and a tmpfs of a few kilobytes (root mounts it).
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from portlib.cli import main, outputs, parse_command
from portlib.errors import OutputError
from portlib.output import dump, load, render
from portlib.output.safewrite import write_text
from tests.report_samples import sample_report, verdicts

REPO = Path(__file__).resolve().parent.parent
NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts, other users)")


def scan_args(*argv: str):  # type: ignore[no-untyped-def]
    return parse_command(["scan", *argv, "127.0.0.1"])


# ----------------------------------------------------- one failure stops nothing


def test_a_failed_output_does_not_stop_the_others(tmp_path: Path) -> None:
    stdout = io.StringIO()
    args = scan_args("-oN", "-", "-oX", "/dev/full", "-oG", str(tmp_path / "scan.gnmap"))
    written = outputs.write_outputs(sample_report(), args, stdout)
    assert stdout.getvalue() == render(sample_report(), "normal")
    assert written.paths == [str(tmp_path / "scan.gnmap")]
    (failure,) = written.failures
    assert str(failure) == "cannot write /dev/full: No space left on device"
    assert (tmp_path / "scan.gnmap").read_text() == render(sample_report(), "grepable")


@pytest.mark.live
def test_the_cli_writes_every_output_and_reports_each_failure(tmp_path: Path) -> None:
    gnmap = tmp_path / "scan.gnmap"
    done = subprocess.run(
        [sys.executable, "-m", "portlib", "scan", "-Pn", "-p", "1", "127.0.0.1",
         "-oN", "-", "-oX", "/dev/full", "-oG", str(gnmap)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 2
    assert "portlib scan report for 127.0.0.1" in done.stdout  # the -oN - table arrived
    assert "Ports: 1/closed/tcp//tcpmux///" in gnmap.read_text()
    lines = done.stderr.splitlines()
    assert "portlib: error: cannot write /dev/full: No space left on device" in lines
    assert "Traceback" not in done.stderr


# ------------------------------------------------------- old reports survive


@contextlib.contextmanager
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path) -> None:
    with open(disk / "filler", "wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 512)


@needs_root
def test_a_full_disk_leaves_the_old_report_whole(tmp_path: Path) -> None:
    with tiny_disk(tmp_path) as disk:
        old = render(sample_report(hosts=sample_report().hosts[1:]), "xml")
        (disk / "old.xml").write_text(old)
        fill(disk)
        args = parse_command(["scan", "127.0.0.1", "-oA", str(disk / "old")])
        written = outputs.write_outputs(sample_report(), args)
        assert len(written.failures) == 3  # .xml, .gnmap and .nmap: no room for any
        assert all("No space left on device" in str(f) for f in written.failures)
        assert (disk / "old.xml").read_text() == old  # not cut to a few kilobytes
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "old.xml"]  # no leftovers
        (disk / "filler").unlink()
        assert outputs.write_outputs(sample_report(), args).failures == []
        assert verdicts(load(disk / "old.xml")) == verdicts(sample_report())


def test_a_replaced_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "scan.xml"
    path.write_text("old")
    path.chmod(0o600)
    dump(sample_report(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert verdicts(load(path)) == verdicts(sample_report())


def test_devices_and_descriptors_are_written_in_place(tmp_path: Path) -> None:
    dump(sample_report(), "/dev/null", "xml")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)  # still the device, not a file
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: stdout is the pipe; -oX /dev/stdout must reach it
        os.dup2(write_end, 1)
        code = 0
        try:
            dump(sample_report(), "/dev/stdout", "grepable")
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        received = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert received == render(sample_report(), "grepable")


def test_append_output_adds_to_normal_and_grepable_files(tmp_path: Path) -> None:
    base = tmp_path / "scan"
    args = parse_command(["scan", "127.0.0.1", "-oA", str(base), "--append-output"])
    for _ in range(2):
        assert outputs.write_outputs(sample_report(), args).failures == []
    grepable = render(sample_report(), "grepable")
    assert Path(f"{base}.gnmap").read_text() == grepable * 2
    assert Path(f"{base}.nmap").read_text() == render(sample_report(), "normal") * 2
    assert verdicts(load(f"{base}.xml")) == verdicts(sample_report())  # replaced: still XML


# ------------------------------------------------------------------ symlinks


@pytest.fixture
def shared_dir(tmp_path: Path) -> Path:
    """A sticky, world-writable directory, as /tmp is."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    return shared


@needs_root
def test_a_link_another_user_planted_in_a_sticky_directory_is_refused(
    tmp_path: Path, shared_dir: Path
) -> None:
    victim = tmp_path / "victim.conf"
    victim.write_text("precious\n")
    link = shared_dir / "scan.xml"
    link.symlink_to(victim)
    os.lchown(link, NOBODY, NOBODY)
    with pytest.raises(OutputError, match="symlink that user 65534 owns"):
        dump(sample_report(), link)
    with pytest.raises(OutputError, match="refusing to follow it"):
        outputs.check_outputs(scan_args("-oX", str(link)))
    assert victim.read_text() == "precious\n"
    # A dangling one (root would create the file it names) is refused the same way.
    dangling = shared_dir / "new.xml"
    dangling.symlink_to(tmp_path / "created-by-root")
    os.lchown(dangling, NOBODY, NOBODY)
    with pytest.raises(OutputError, match="refusing to follow it"):
        write_text(str(dangling), "x")
    assert not (tmp_path / "created-by-root").exists()


@needs_root
def test_a_link_in_a_directory_of_a_planted_link_is_refused(
    tmp_path: Path, shared_dir: Path
) -> None:
    target_dir = tmp_path / "etc"
    target_dir.mkdir()
    planted = shared_dir / "reports"
    planted.symlink_to(target_dir)
    os.lchown(planted, NOBODY, NOBODY)
    with pytest.raises(OutputError, match="refusing to follow it"):
        dump(sample_report(), planted / "scan.xml")
    assert list(target_dir.iterdir()) == []


def test_ones_own_link_is_followed_and_stays_a_link(tmp_path: Path, shared_dir: Path) -> None:
    real = tmp_path / "real.xml"
    link = shared_dir / "mine.xml"
    link.symlink_to(real)  # owned by this user: the kernel's rule lets it through
    dump(sample_report(), link)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert verdicts(load(real)) == verdicts(sample_report())


def test_a_link_is_replaced_only_at_its_target(tmp_path: Path) -> None:
    """Replacing renames inside the directory the path resolved to: the link itself is
    never renamed over, and a second write goes to the same target."""
    real = tmp_path / "data" / "scan.gnmap"
    real.parent.mkdir()
    link = tmp_path / "scan.gnmap"
    link.symlink_to(real)
    for _ in range(2):
        dump(sample_report(), link)
    assert link.is_symlink()
    assert real.read_text() == render(sample_report(), "grepable")
    assert sorted(p.name for p in real.parent.iterdir()) == ["scan.gnmap"]


# --------------------------------------------------------- unreadable places


@needs_root
def test_an_unreachable_path_is_one_line_and_exit_2_for_a_plain_user(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)  # as /root is to other users
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            sys.stderr = open(write_end, "w", closefd=False)  # noqa: SIM115
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = main(["scan", "-sL", "127.0.0.1", "-oX", str(private / "x.xml")])
            sys.stderr.flush()
        except BaseException:
            code = 98
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        err = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 2
    assert err == f"portlib: error: cannot write {private / 'x.xml'}: permission denied\n"
