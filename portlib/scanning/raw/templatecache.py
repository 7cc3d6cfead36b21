"""Where the scapy-built templates are cached on disk, and reading and writing that file.

File I/O only: what the file holds and whether it is right is ``templates``'
business. Every failure here means "no cache" (``None`` / ``False``), never an
error, because the caller can always rebuild with scapy.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
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

    Trusted means a regular file (checked on the open descriptor, so a FIFO planted
    there cannot hang the scan: the open does not block), not a symlink, owned by us
    or by root and writable by nobody else: raw scans run as root, and the packets
    they send must not come from a file another user could have written or chosen.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError:  # missing, or a symlink (ELOOP)
        return None
    try:
        with os.fdopen(fd, "rb") as file:
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
    file torn by a crash fails the reader's checks and is rebuilt. The directory is
    reached one component at a time without following symlinks, so a link anywhere
    in the path means no cache rather than a file written where the link points.
    Root writes only into a directory root owns (or creates under one).
    """
    directory, name = os.path.split(os.path.abspath(path))
    data = json.dumps(document, indent=1, sort_keys=True).encode()
    try:
        dir_fd = _open_directory(directory)
    except OSError:
        return False
    if dir_fd is None:
        return False
    temporary = f".tmp-{secrets.token_hex(8)}.json"
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temporary, flags, 0o600, dir_fd=dir_fd)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            os.fchmod(file.fileno(), 0o644)
        os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=dir_fd)
        return False
    finally:
        os.close(dir_fd)
    return True


def _open_directory(directory: str) -> int | None:
    """A descriptor of ``directory`` reached from ``/`` without following a symlink,
    creating missing components (0755); None when root would write into a directory
    root does not own (sudo keeping HOME). OSError for a symlink (ELOOP, ENOTDIR)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    as_root = os.geteuid() == 0
    fd = os.open("/", flags)
    try:
        for part in directory.split("/"):
            if not part:
                continue
            try:
                inner = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                if as_root and os.fstat(fd).st_uid != 0:
                    return None
                os.mkdir(part, 0o755, dir_fd=fd)
                inner = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = inner
        if as_root and os.fstat(fd).st_uid != 0:
            return None
        found, fd = fd, -1  # handed to the caller, not closed below
        return found
    finally:
        if fd >= 0:
            os.close(fd)
