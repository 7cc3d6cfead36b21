"""A report's bytes, from a file, a stream or text, never more than :data:`MAX_REPORT_BYTES`.

The limit holds whatever the input is: a regular file, a pipe, a FIFO or a
device such as ``/dev/zero``, because it is counted while reading, not taken
from ``stat``. The bytes come in chunks as the parser asks for them, so an input
that is plainly not a report fails on its first chunk instead of after 512 MB.

    >>> with ReportInput.from_bytes(b"<nmaprun/>") as source:
    ...     source.head(), b"".join(source)
    (b'<nmaprun/>', b'<nmaprun/>')
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import IO

from portlib.errors import ReportFormatError

MAX_REPORT_BYTES = 512 * 1024 * 1024
"""Refuse reports larger than this (a full 65535-port scan of a /24 is far below)."""

CHUNK_BYTES = 1 << 20
TEXT_NAME = "<report text>"


class ReportInput:
    """One report input, read at most ``limit`` bytes far; a context manager that
    closes the file it opened (never a stream it was given)."""

    def __init__(
        self,
        name: str,
        read: Callable[[int], bytes],
        close: Callable[[], object] | None = None,
        limit: int = MAX_REPORT_BYTES,
    ) -> None:
        self.name = name
        self._read = read
        self._close = close
        self._limit = limit
        self._taken = 0
        self._pending = b""  # read by head(), not yet handed out

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], limit: int = MAX_REPORT_BYTES) -> ReportInput:
        name = os.fsdecode(path)
        try:
            file = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise _unreadable(exc, name) from None
        try:
            info = os.fstat(file.fileno())
        except OSError as exc:
            file.close()
            raise _unreadable(exc, name) from None
        if stat.S_ISDIR(info.st_mode):
            file.close()
            raise ReportFormatError("cannot read the report: it is a directory", source=name)
        if stat.S_ISREG(info.st_mode) and info.st_size > limit:
            file.close()
            raise _too_large(name, limit, info.st_size)
        return cls(name, file.read, file.close, limit)

    @classmethod
    def from_stream(
        cls, stream: IO[bytes], name: str | None = None, limit: int = MAX_REPORT_BYTES
    ) -> ReportInput:
        return cls(name or str(getattr(stream, "name", "<stream>")), stream.read, None, limit)

    @classmethod
    def from_bytes(
        cls, data: bytes, name: str = TEXT_NAME, limit: int = MAX_REPORT_BYTES
    ) -> ReportInput:
        if len(data) > limit:
            raise _too_large(name, limit, len(data))
        chunks = iter((data,))
        return cls(name, lambda _size: next(chunks, b""), None, limit)

    def _next_chunk(self) -> bytes:
        if self._pending:
            chunk, self._pending = self._pending, b""
            return chunk
        # One byte past the limit tells "exactly at the limit" from "over it".
        want = min(CHUNK_BYTES, self._limit + 1 - self._taken)
        try:
            chunk = self._read(want)
        except OSError as exc:
            raise _unreadable(exc, self.name) from None
        self._taken += len(chunk)
        if self._taken > self._limit:
            raise _too_large(self.name, self._limit)
        return chunk

    def head(self, size: int = 64) -> bytes:
        """The first bytes (up to ``size``, fewer if the input is shorter), left to be read."""
        while len(self._pending) < size:
            kept, self._pending = self._pending, b""
            chunk = self._next_chunk()
            self._pending = kept + chunk
            if not chunk:
                break
        return self._pending[:size]

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self._next_chunk():
            yield chunk

    def read_all(self) -> bytes:
        """Every byte (at most the limit)."""
        return b"".join(self)

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> ReportInput:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _unreadable(exc: OSError, name: str) -> ReportFormatError:
    return ReportFormatError(f"cannot read the report: {exc.strerror or exc}", source=name)


def _too_large(name: str, limit: int, size: int | None = None) -> ReportFormatError:
    what = f"{size} bytes is" if size is not None else "it is"
    return ReportFormatError(
        f"{what} larger than the {limit} bytes portlib reads as a report", source=name
    )
