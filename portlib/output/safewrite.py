"""Writing a report file so that a failure never destroys the old one and a planted
symlink never redirects it.

- A regular file, or a name not there yet, is replaced atomically: the text goes to
  a new file in the same directory, reaches the disk, and is renamed over the name.
  On a full disk or any other error the old file stays as it was.
- A name that is a FIFO or a device (``/dev/null``, a terminal), or a descriptor of
  this process (``/dev/stdout``, ``/dev/fd/3``), is written in place: there is no
  file to replace, and the caller's pipe or redirection must keep receiving.
- Symlinks are resolved here, one at a time, by the rule the kernel applies when
  ``fs.protected_symlinks`` is on: a link in a sticky, world-writable directory
  (``/tmp``) is followed only when it belongs to this user or to the directory's
  owner, so root does not write through a link another user planted. The rename
  happens inside the directory the path resolved to, and rename never follows a link.
- A file a scan writes host by host (:func:`open_stream`) is opened once, before the
  scan, and written in place: it must fill while the scan runs (``tail -f``, and an
  interrupted scan keeps what it found), which a file renamed into place only at
  the end cannot. So it is not replaced atomically: the old file of that name is
  emptied when the scan starts, and a failure mid-scan leaves the part written.
  The same symlink rules hold, and the last component is opened with
  ``O_NOFOLLOW`` inside the directory it resolved to, so a link planted after the
  check is refused rather than followed.

    >>> write_text("scans/monday.xml", xml)                        # doctest: +SKIP
    >>> out = open_stream("scans/monday.gnmap", append=True)       # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from typing import TextIO

from portlib.errors import OutputError

MAX_LINKS = 40  # as the kernel's ELOOP limit
_DESCRIPTORS = "/proc/"  # /dev/stdout -> /proc/self/fd/1: links there are not paths


def write_text(path: str, text: str, *, append: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` as described above; ``append`` keeps what the
    file held and adds ``text`` after it. Raises OutputError naming ``path``."""
    data = text.encode("utf-8")
    try:
        resolved, info, in_place = _destination(path)
        if in_place:
            _write_in_place(resolved, data, append=append or resolved.startswith(_DESCRIPTORS))
        else:
            _replace(resolved, data, info, append=append)
    except OSError as exc:
        raise _named(exc, path) from None


def open_stream(path: str, *, append: bool = False) -> TextIO:
    """``path`` opened for writing in place (UTF-8 text), emptied unless ``append``,
    refusing planted symlinks as described above. Raises OutputError naming ``path``."""
    try:
        resolved, _, in_place = _destination(path)
        if in_place:
            append = append or resolved.startswith(_DESCRIPTORS)
            flags = os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC | (os.O_APPEND if append else 0)
            fd = os.open(resolved, flags)
        else:
            directory, name = os.path.split(resolved)
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC
                flags |= os.O_APPEND if append else os.O_TRUNC
                fd = os.open(name, flags, 0o666, dir_fd=dir_fd)  # the umask applies
            finally:
                os.close(dir_fd)
        return open(fd, "w", encoding="utf-8", closefd=True)
    except OSError as exc:
        raise _named(exc, path) from None


def check_writable(path: str) -> None:
    """Raise OutputError now if writing ``path`` later is bound to fail (a missing or
    unwritable directory, a directory in its place, a refused symlink)."""
    try:
        resolved, _, in_place = _destination(path)
        target = resolved
        if not in_place:
            target = os.path.dirname(resolved)  # the file is replaced: the directory counts
            parent = _stat_or_none(target)
            if parent is None or not stat.S_ISDIR(parent.st_mode):
                shown = os.path.dirname(path) or "."
                raise OutputError(f"cannot write {path}: directory {shown} does not exist")
        if not os.access(target, os.W_OK):
            raise OutputError(f"cannot write {path}: permission denied")
    except OSError as exc:
        raise _named(exc, path) from None


def _destination(path: str) -> tuple[str, os.stat_result | None, bool]:
    """Where ``path`` resolves to, what is there now, and whether to write in place
    (a device, a FIFO, a descriptor) rather than replace a file."""
    resolved = resolve(path)
    info = _stat_or_none(resolved)
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise OutputError(f"cannot write {path}: it is a directory")
    in_place = resolved.startswith(_DESCRIPTORS) or (
        info is not None and not stat.S_ISREG(info.st_mode)
    )
    return resolved, info, in_place


def _named(exc: OSError, path: str) -> OutputError:
    if isinstance(exc, OutputError):
        return exc
    return OutputError(f"cannot write {path}: {_why(exc)}")


def resolve(path: str) -> str:
    """``path`` made absolute with every symlink in it resolved, refusing the links the
    protected_symlinks rule refuses. The walk stops at the first name that does not
    exist (the rest is kept as given) and at links into ``/proc``, which the kernel
    resolves itself (``/proc/self/fd/1`` may point at a pipe)."""
    # Not abspath: it folds "link/.." lexically, where the kernel goes up from the target.
    full = path if path.startswith("/") else os.path.join(os.getcwd(), path)
    pending = full.split("/")[::-1]  # components left, the next one last
    current = "/"
    links = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            current = os.path.dirname(current)
            continue
        candidate = os.path.join(current, part)
        try:
            info = os.lstat(candidate)
        except FileNotFoundError:
            return os.path.join(candidate, *reversed(pending))
        if not stat.S_ISLNK(info.st_mode):
            current = candidate
            continue
        links += 1
        if links > MAX_LINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
        _check_protected(current, info, path)
        if candidate.startswith(_DESCRIPTORS):
            return os.path.join(candidate, *reversed(pending))
        target = os.readlink(candidate)
        if target.startswith("/"):
            current = "/"
        pending.extend(target.split("/")[::-1])
    return current


def _check_protected(directory: str, link: os.stat_result, path: str) -> None:
    """The kernel's protected_symlinks rule for a link found in ``directory``."""
    parent = os.stat(directory)
    shared = parent.st_mode & stat.S_ISVTX and parent.st_mode & stat.S_IWOTH
    if shared and link.st_uid not in (os.geteuid(), parent.st_uid):
        raise OutputError(
            f"cannot write {path}: it goes through a symlink that user {link.st_uid} owns in"
            f" {directory}, a sticky world-writable directory; refusing to follow it"
        )


def _replace(resolved: str, data: bytes, old: os.stat_result | None, *, append: bool) -> None:
    directory, name = os.path.split(resolved)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    temporary = f".{name}.{secrets.token_hex(6)}.tmp"
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temporary, flags, 0o666, dir_fd=dir_fd)  # the umask applies, as for nmap
        try:
            if old is not None:
                _keep_owner_and_mode(fd, old)
                if append:
                    _copy_old(name, dir_fd, fd)
            _write_all(fd, data)
            os.fsync(fd)  # the data is on disk before the old file goes
        finally:
            os.close(fd)
        os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        with contextlib.suppress(OSError):
            os.fsync(dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=dir_fd)
        raise
    finally:
        os.close(dir_fd)


def _keep_owner_and_mode(fd: int, old: os.stat_result) -> None:
    """The new file gets the old one's permissions (and, for root, its owner)."""
    if os.geteuid() == 0:
        with contextlib.suppress(OSError):
            os.fchown(fd, old.st_uid, old.st_gid)
    os.fchmod(fd, stat.S_IMODE(old.st_mode))


def _copy_old(name: str, dir_fd: int, fd: int) -> None:
    old_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        while chunk := os.read(old_fd, 1 << 20):
            _write_all(fd, chunk)
    finally:
        os.close(old_fd)


def _write_in_place(path: str, data: bytes, *, append: bool) -> None:
    flags = os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC | (os.O_APPEND if append else 0)
    fd = os.open(path, flags)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _stat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _why(exc: OSError) -> str:
    return "permission denied" if isinstance(exc, PermissionError) else exc.strerror or str(exc)
