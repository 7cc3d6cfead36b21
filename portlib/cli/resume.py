"""``portlib scan --resume FILE``: a scan saving its checkpoint in FILE, or, when FILE
already holds one, the saved scan going on with its own flags restored.

    portlib scan -sS -p1-100 198.18.0.0/15 -oX big.xml --resume big.resume
    ^C
    portlib scan --resume big.resume      # the same scan, from where it stopped
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from portlib.errors import ScanError


def resumed_args(args: argparse.Namespace) -> argparse.Namespace:
    """The flags to scan with: ``args`` for a new checkpoint, the saved scan's own
    (with ``saved_scan`` set) when ``args.resume`` names an existing one."""
    from portlib.cli import parse_command
    from portlib.scanning.checkpoint import load_checkpoint

    path = args.resume
    if not os.path.exists(path):
        args.saved_scan = None
        return args
    saved = load_checkpoint(path)
    if without_resume(args.command_words[1:]):
        raise ScanError(
            f"{path} holds a checkpoint: '--resume {path}' goes on with the scan saved"
            " there and takes no other scan options (its own are restored)"
        )
    if saved.argv[1:2] != ("scan",):
        raise ScanError(f"{path} is the checkpoint of a scan not started from the command line")
    restored = parse_command(["scan", *without_resume(saved.argv[2:]), "--resume", path])
    restored.saved_scan = saved
    return restored


def without_resume(words: Sequence[str]) -> list[str]:
    """``words`` without their ``--resume FILE`` (or ``--resume=FILE``)."""
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word == "--resume":
            skip = True
        elif not word.startswith("--resume="):
            kept.append(word)
    return kept
