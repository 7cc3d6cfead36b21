"""After the README's editable install, a user's ``mypy --strict`` finds portlib and
checks calls against its types (py.typed ships, and the install is a path mypy sees)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

GOOD = """\
import portlib

report: portlib.ScanReport = portlib.scan("127.0.0.1", "22")
ports: list[int] = [p.port for p in report.open_ports()]
"""

BAD = """\
import portlib

report = portlib.scan("127.0.0.1", "22")
count: int = report.hosts
"""


def run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.mark.timeout(900)
def test_mypy_finds_portlib_after_an_editable_install(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    made = run(sys.executable, "-m", "venv", "--system-site-packages", str(venv), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    python = str(venv / "bin" / "python")
    # The README's install, less the dependencies that are already on this machine.
    installed = run(python, "-m", "pip", "install", "--no-deps", "-e", str(REPO), cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "bad.py").write_text(BAD)
    good = run(python, "-m", "mypy", "--strict", "--no-incremental", "good.py", cwd=tmp_path)
    assert good.returncode == 0, good.stdout
    assert "import-not-found" not in good.stdout
    bad = run(python, "-m", "mypy", "--strict", "--no-incremental", "bad.py", cwd=tmp_path)
    assert bad.returncode == 1
    assert 'Incompatible types in assignment (expression has type "tuple[HostResult, ...]"' in (
        bad.stdout
    )
