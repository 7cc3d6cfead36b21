"""Helper processes of the lab (servers, relays): start, wait for READY, stop.

Each one runs in its own session (process group) so stopping it also stops anything it
spawned. Its output goes to a log file in the lab's directory: a pipe nobody reads
would fill up and freeze it. It calls :func:`announce_ready` once it listens (``READY``
on stdout), then stops using stdout. It also gets ``--parent PID`` and exits when that
process is gone, so a killed test run does not leave servers behind.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.lab.netns import LabError, kill_group, ns_argv

REPO_ROOT = Path(__file__).resolve().parents[2]


def python_env() -> dict[str, str]:
    """Environment so ``portlib`` and ``tests`` import from this checkout."""
    env = dict(os.environ)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + old if old else "")
    return env


def python_module_argv(
    ns: str, module: str, args: Sequence[str], *, stdlib_only: bool = False
) -> list[str]:
    """``python -m module`` inside ``ns``. ``stdlib_only`` skips site-packages (``-S``):
    the helpers need only the standard library and start ~50 ms faster without it."""
    flags = ["-S"] if stdlib_only else []
    return ns_argv(ns, [sys.executable, *flags, "-m", module, *args])


class Helper:
    """One running helper process; ``stop()`` kills its whole process group."""

    def __init__(self, argv: list[str], log_path: Path, *, ready_timeout_s: float = 15.0):
        self.argv = argv
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=REPO_ROOT,
                env=python_env(),
                start_new_session=True,
            )
        try:
            self._wait_ready(ready_timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        buf = b""
        while b"READY\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LabError(f"lab helper not ready after {timeout_s:g} s: {self._describe()}")
            readable, _, _ = select.select([fd], [], [], left)
            if readable:
                chunk = os.read(fd, 4096)
                if not chunk:
                    self.proc.wait(timeout=5)
                    raise LabError(
                        f"lab helper exited with {self.proc.returncode} before READY: "
                        f"{self._describe()}"
                    )
                buf += chunk
        # The pipe stays open until stop(): closing it now could hit the helper with
        # EPIPE if it were still flushing.

    def _describe(self) -> str:
        try:
            tail = self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            tail = ""
        return f"{' '.join(self.argv)}\n--- log {self.log_path} ---\n{tail}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        """Ask the helper's process group to exit (SIGTERM); :meth:`stop` makes sure."""
        if self.proc.poll() is None:
            kill_group(self.proc.pid, signal.SIGTERM)

    def stop(self) -> None:
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=1.0)
        kill_group(self.proc.pid)  # the leader if it ignored SIGTERM, and any children
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()


def parent_watch_args(keep: bool) -> list[str]:
    """``--parent PID`` unless the lab is kept for debugging (then helpers outlive us)."""
    return ["--parent", "0" if keep else str(os.getpid())]


def announce_ready() -> None:
    """Tell the lab we are ready, then point stdout at stderr (the log) for good."""
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr


def parent_gone(parent: int) -> bool:
    """True once ``parent`` (a pid given with --parent; 0 = never) has exited."""
    return parent != 0 and os.getppid() != parent
