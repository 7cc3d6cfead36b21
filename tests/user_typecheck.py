"""Run ``mypy --strict`` on a user's script against this checkout, as a user's editor would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def mypy_on(script: Path, text: str) -> subprocess.CompletedProcess[str]:
    """Write ``text`` to ``script`` and type-check it strictly (portlib found in this repo)."""
    script.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(script)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "MYPYPATH": str(REPO)},
        timeout=300,
    )
