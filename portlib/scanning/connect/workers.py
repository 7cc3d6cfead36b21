"""Big connect scans over forked worker processes, verdicts back through pipes as records.

Each worker has its own epoll and sockets and probes an exact sub-shard of the
probe order, so the system calls (most of the cost) run on every core. A
worker streams fixed-size result records, then one trailer: its counts when
done, or the error that stopped it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import select
import signal
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple, NoReturn

from portlib.errors import ScanError
from portlib.model import PortResult, PortState, Protocol, Reason
from portlib.scanning.connect.core import ConnectCore, Counts
from portlib.scanning.connect.ledger import Decided
from portlib.scanning.contract import Emit, ScanWork
from portlib.scanning.wakeup import Wakeup

_PAUSE_AT = 16_384  # decoded verdicts waiting for emit before the pipes stop being read
_READ_SIZE = 1 << 18


class Decoded(NamedTuple):
    """What a chunk of a worker's pipe completed: verdicts, and its trailer if it came."""

    results: list[PortResult]
    done: Counts | None
    failure: str | None


class RecordCodec:
    """The records of one worker's pipe: a result per verdict, then one trailer.

    A record is ``kind, value, state, reason, rtt``; for a result ``value`` is
    the probe index and a NaN rtt means none; for a trailer ``value`` is the
    length of the text that follows it (the counts, or the failure message).
    Decoding names each probe by the host and port of ``work``.
    """

    RECORD: ClassVar[struct.Struct] = struct.Struct("=BQBBd")
    RESULT, DONE, FAILED = 0, 1, 2
    STATES: ClassVar[tuple[PortState, ...]] = tuple(PortState)
    REASONS: ClassVar[tuple[Reason, ...]] = tuple(Reason)
    _STATE_CODES: ClassVar[dict[PortState, int]] = {s: i for i, s in enumerate(STATES)}
    _REASON_CODES: ClassVar[dict[Reason, int]] = {r: i for i, r in enumerate(REASONS)}
    _NO_RTT = float("nan")

    __slots__ = ("_buffer", "_work")

    def __init__(self, work: ScanWork) -> None:
        self._work = work
        self._buffer = bytearray()  # received, not yet decoded

    @classmethod
    def results(cls, decided: list[Decided]) -> bytes:
        pack, result, no_rtt = cls.RECORD.pack, cls.RESULT, cls._NO_RTT
        states, reasons = cls._STATE_CODES, cls._REASON_CODES
        return b"".join(
            [
                pack(result, index, states[state], reasons[reason], no_rtt if rtt is None else rtt)
                for index, state, reason, rtt in decided
            ]
        )

    @classmethod
    def done(cls, counts: Counts) -> bytes:
        return cls._trailer(cls.DONE, f"{counts.sent} {counts.self_connects} {counts.stalls}")

    @classmethod
    def failed(cls, message: str) -> bytes:
        return cls._trailer(cls.FAILED, message)

    @classmethod
    def _trailer(cls, kind: int, text: str) -> bytes:
        data = text.encode()
        return cls.RECORD.pack(kind, len(data), 0, 0, 0.0) + data

    def feed(self, chunk: bytes) -> Decoded:
        """Add ``chunk`` to what came before; decode every whole record now there."""
        buf = self._buffer
        buf += chunk
        size = self.RECORD.size
        results: list[PortResult] = []
        done: Counts | None = None
        failure: str | None = None
        while len(buf) >= size:
            whole = len(buf) // size
            kinds = bytes(buf[0 : whole * size : size])
            leading = whole - len(kinds.lstrip(bytes([self.RESULT])))  # results before a trailer
            if leading:
                results += self._decode(bytes(buf[: leading * size]))
                del buf[: leading * size]
                continue
            kind, length, _state, _reason, _rtt = self.RECORD.unpack_from(buf)
            end = size + length
            if len(buf) < end:
                break  # the trailer's text is not all here yet
            text = bytes(buf[size:end]).decode()
            del buf[:end]
            if kind == self.DONE:
                sent, self_connects, stalls = (int(x) for x in text.split())
                done = Counts(sent, self_connects, stalls)
            else:
                failure = text
        return Decoded(results, done, failure)

    def _decode(self, block: bytes) -> list[PortResult]:
        work = self._work
        hosts, ports, count, tcp = work.hosts, work.ports, len(work.hosts), Protocol.TCP
        states, reasons = self.STATES, self.REASONS
        return [
            PortResult(
                hosts[index % count],
                ports[index // count],
                tcp,
                states[state],
                reasons[reason],
                None if rtt != rtt else rtt,  # NaN: no answer
            )
            for _kind, index, state, reason, rtt in self.RECORD.iter_unpack(block)
        ]


@dataclass(slots=True)
class WorkerPool:
    """The forked workers of one scan and the parent's side of their pipes."""

    work: ScanWork
    counts: Counts = field(default_factory=Counts)  # the finished workers' counts, summed
    children: dict[int, int] = field(default_factory=dict)  # read fd -> pid
    codecs: dict[int, RecordCodec] = field(default_factory=dict)
    finished: set[int] = field(default_factory=set)
    paused: set[int] = field(default_factory=set)
    pending: deque[PortResult] = field(default_factory=deque)
    failure: list[str] = field(default_factory=list)
    wakeup: Wakeup = field(default_factory=Wakeup)

    def start(self, shards: list[tuple[int, int]], cap: int) -> bool:
        """Fork a worker per shard; False (none left running) if a pipe or fork failed."""
        loop = asyncio.get_running_loop()
        for shard in shards:
            try:
                read_fd, write_fd = os.pipe()
            except OSError:
                break
            try:
                pid = os.fork()
            except OSError:
                os.close(read_fd)
                os.close(write_fd)
                break
            if pid == 0:  # the child: never returns
                os.close(read_fd)
                _child(self.work, shard, cap, write_fd, list(self.children))
            os.close(write_fd)
            os.set_blocking(read_fd, False)
            self.children[read_fd] = pid
            self.codecs[read_fd] = RecordCodec(self.work)
            loop.add_reader(read_fd, self._readable, read_fd)
        if len(self.children) == len(shards):
            return True
        self.stop()
        self.children.clear()
        return False

    async def drain(self, emit: Emit) -> None:
        """Emit every worker's verdicts as they come, until all are done."""
        loop = asyncio.get_running_loop()
        while True:
            while self.pending:
                await emit(self.pending.popleft())
            if self.failure:
                raise ScanError(f"connect scan worker failed: {self.failure[0]}")
            for fd in list(self.paused):
                self.paused.discard(fd)
                loop.add_reader(fd, self._readable, fd)
            if len(self.finished) == len(self.children) and not self.pending:
                return
            await self.wakeup.sleep(None)

    def stop(self) -> None:
        """Close the pipes, kill unfinished workers, reap them all (their sockets die with them)."""
        loop = asyncio.get_running_loop()
        for fd, pid in self.children.items():
            loop.remove_reader(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
            if fd not in self.finished:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

    def _readable(self, fd: int) -> None:
        try:
            chunk = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        if not chunk:
            asyncio.get_running_loop().remove_reader(fd)
            if fd not in self.finished:
                self.failure.append(f"worker process {self.children[fd]} ended without finishing")
            self.finished.add(fd)
            self.wakeup.wake()
            return
        decoded = self.codecs[fd].feed(chunk)
        self.pending.extend(decoded.results)
        if decoded.done is not None:
            self.counts.add(decoded.done)
            self.finished.add(fd)
        if decoded.failure is not None:
            self.failure.append(decoded.failure)
        if len(self.pending) > _PAUSE_AT and fd not in self.finished:
            asyncio.get_running_loop().remove_reader(fd)
            self.paused.add(fd)
        self.wakeup.wake()


def _child(
    work: ScanWork, shard: tuple[int, int], cap: int, out: int, inherited: list[int]
) -> NoReturn:
    """Body of a worker process: probe one shard, stream records to ``out``, exit."""
    status = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # the parent decides about Ctrl-C
        for fd in inherited:  # other workers' pipes: an EOF must mean they ended
            with contextlib.suppress(OSError):
                os.close(fd)
        core = ConnectCore.for_work(work, shard, cap)
        idle = select.poll()  # poll, not select: the epoll fd may be above 1023
        idle.register(core.sockets.epoll.fileno(), select.POLLIN)
        while core.remaining > 0:
            decided = core.step()
            if decided:
                _write_all(out, RecordCodec.results(decided))
            delay = core.wait_time()
            if delay:
                idle.poll(max(1, math.ceil(delay * 1000)))
        _write_all(out, RecordCodec.done(core.counts()))
    except BaseException as exc:  # reported to the parent, which raises it
        status = 1
        with contextlib.suppress(BaseException):
            _write_all(out, RecordCodec.failed(str(exc) or type(exc).__name__))
    finally:
        os._exit(status)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
