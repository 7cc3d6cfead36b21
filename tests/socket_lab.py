"""A network namespace of the test's own, with a socket holder in it (tests.sockholder).

Inside it, only the sockets the test made exist, so portlib, ``ss`` and the
Python evaluation of a filter all see the same table, however busy the machine
is. The namespace follows the lab's naming (``portlib-<pid>-<random>-sock``), so
an interrupted run's namespace is removed by the next lab.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab import lab_available, netns

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def python(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` with this checkout importable, its output captured as text."""
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=ENV, check=check
    )


@contextlib.contextmanager
def lab_or_skip(*tools: str) -> Iterator[SocketLab]:
    """A SocketLab, or a skip saying why there cannot be one here (or a tool is missing)."""
    reason = lab_available()
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if reason or missing:
        pytest.skip(reason or f"{', '.join(missing)} not installed")
    with SocketLab() as lab:
        yield lab


class SocketLab:
    """``with SocketLab() as lab: lab.run({"op": "listen", ...})``; ``lab.ns`` is its name."""

    def __init__(self) -> None:
        self.ns = f"{netns.new_lab_id()}-sock"
        self.holder: subprocess.Popen[str] | None = None

    def __enter__(self) -> SocketLab:
        netns.clean_stale()
        netns.add_namespace(self.ns)
        try:
            netns.ip_batch(self.ns, ["link set lo up"])
            self.holder = self.spawn([sys.executable, "-m", "tests.sockholder"])
            assert self.holder.stdout is not None
            if json.loads(self.holder.stdout.readline()) != {"ready": True}:
                raise RuntimeError("the socket holder did not start")
            self.pid = int(self.run({"op": "pid"})["pid"])
        except BaseException:
            self.__exit__()
            raise
        return self

    def spawn(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        """A process inside the namespace, this checkout importable, pipes for stdin/stdout."""
        return subprocess.Popen(
            netns.ns_argv(self.ns, argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=ENV,
            **kwargs,
        )

    def run(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.holder is not None and self.holder.stdin and self.holder.stdout
        self.holder.stdin.write(json.dumps(command) + "\n")
        self.holder.stdin.flush()
        answer: dict[str, Any] = json.loads(self.holder.stdout.readline())
        return answer

    def exec(self, argv: list[str]) -> str:
        return netns.ns_run(self.ns, argv).stdout

    def __exit__(self, *exc: object) -> None:
        if self.holder is not None:
            if self.holder.stdin:
                self.holder.stdin.close()
            try:
                self.holder.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.holder.kill()
                self.holder.wait()
        netns.delete_namespace(self.ns)
