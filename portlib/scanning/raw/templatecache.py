"""Where the scapy-built templates are cached on disk, and reading and writing that file.

File I/O only: what the file holds and whether it is right is ``templates``'
business. Every failure here means "no cache" (``None`` / ``False``), never an
error, because the caller can always rebuild with scapy.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Mapping
from typing import Any

# The file is a few kilobytes; anything much bigger is not ours.
MAX_SIZE = 1 << 20


def cache_dir(environ: Mapping[str, str]) -> str | None:
    """``$PORTLIB_CACHE_DIR``, else ``$XDG_CACHE_HOME/portlib``, else ``~/.cache/portlib``.

    Empty variables count as unset; a relative ``XDG_CACHE_HOME`` is ignored,
    as the XDG base directory spec says. Without ``HOME`` there is no cache.
    """
    explicit = environ.get("PORTLIB_CACHE_DIR")
    if explicit:
        return explicit
    xdg = environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "portlib")
    home = environ.get("HOME")
    if home:
        return os.path.join(home, ".cache", "portlib")
    return None


def read_json(path: str) -> Any:
    """The JSON document at ``path``, or None if it is missing, unreadable or not trusted.

    Trusted means owned by us or by root and writable by nobody else: raw scans
    run as root, and the packets they send must not come from a file another
    user could have written.
    """
    try:
        with open(path, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SIZE:
                return None
            if info.st_uid not in (os.geteuid(), 0) or info.st_mode & 0o022:
                return None
            return json.loads(file.read(MAX_SIZE + 1))
    except (OSError, ValueError):  # ValueError: bad JSON or bad UTF-8
        return None


def write_json(path: str, document: Any) -> bool:
    """Replace the file at ``path`` by ``document`` atomically (mode 0644, its dir 0755).

    A temporary file in the same directory is renamed over the old one, so a
    reader sees the old file or the new one, never a partial one. No fsync: a
    file torn by a crash fails the reader's checks and is rebuilt. Root writes
    only into a directory root owns (or would create under one).
    """
    import tempfile

    directory = os.path.dirname(path) or "."
    data = json.dumps(document, indent=1, sort_keys=True).encode()
    try:
        if os.geteuid() == 0 and _owner_of_nearest(directory) != 0:
            return False  # sudo keeping HOME: no root-owned dirs or files in a user's home
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            os.fchmod(file.fileno(), 0o644)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        return False
    return True


def _owner_of_nearest(directory: str) -> int:
    """The owner of ``directory``, or of its nearest existing ancestor if it is missing."""
    path = os.path.abspath(directory)
    while True:
        try:
            return os.stat(path).st_uid
        except FileNotFoundError:
            parent = os.path.dirname(path)
            if parent == path:
                raise
            path = parent
