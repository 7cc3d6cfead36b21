"""A forked process that does the raw IP socket's ``sendto`` calls on the other core.

On loopback (and any local target) a raw socket's ``sendto`` runs the whole
receive path of the probe synchronously: the target's TCP or UDP stack, its
RST or ICMP answer, the delivery to our packet socket. That is about half the
cost of a loopback scan. Python has no ``sendmmsg``, a thread would fight the
GIL on every call, and a TX ring cannot send to 127.0.0.0/8 (such frames are
dropped as martian), so a child process sends instead: the parent writes
(probe index, cookie) records down a pipe, one write per batch, and keeps all
of the scan's state; the child only patches its copy of the templates and
sends. A send the kernel refuses outright goes back up a second pipe as
(probe index, errno), to be decided by the parent as before.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import operator
import os
import socket
import time
from array import array
from collections import deque
from collections.abc import Sequence
from itertools import repeat

from portlib.scanning.raw.wire import BoundProbe

# Send errors that mean "not now": wait and send again (here, and in the engine).
TRANSIENT = frozenset((errno.EAGAIN, errno.ENOBUFS, errno.EINTR))
_RECORD = array("I").itemsize * 2
# A small pipe bounds how far the child lags behind the send times the parent
# records (1024 probes, and a batch waiting in the backlog: a few ms), so timeouts
# measure the network, not the queue.
PIPE_BYTES = 8192
# The record that tells the child to stop: other forked processes (the connect
# engine's workers) may hold the pipe open, so end-of-file alone is not enough.
STOP = 0xFFFFFFFF
MAX_INDEX = STOP - 1  # probe indices travel as 32-bit unsigned integers


class SendWorker:
    """The parent's handle: ``send`` a batch, ``errors`` to collect refused sends."""

    def __init__(
        self,
        targets: Sequence[tuple[BoundProbe, socket.socket, tuple[str, int]]],
        ports: Sequence[int],
    ):
        """``targets[h]``: host number h's probe, raw socket, address; index = h*len(ports)+p."""
        jobs_r, jobs_w = os.pipe()
        errs_r, errs_w = os.pipe()
        with contextlib.suppress(OSError):
            fcntl.fcntl(jobs_w, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        try:
            pid = os.fork()
        except OSError:
            for fd in (jobs_r, jobs_w, errs_r, errs_w):
                os.close(fd)
            raise
        if pid == 0:  # the child: send until the stop record (or end-of-file)
            status = 0
            try:
                _close_all_but(jobs_r, errs_w, *(sock.fileno() for _, sock, _ in targets))
                _child(jobs_r, errs_w, targets, ports)
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        os.close(jobs_r)
        os.close(errs_w)
        os.set_blocking(errs_r, False)
        os.set_blocking(jobs_w, False)
        self.pid = pid
        self.jobs = jobs_w
        self.errs = errs_r
        self._partial = b""
        self._backlog = bytearray()  # records the pipe had no room for yet

    def send(self, records: array[int]) -> None:
        """Hand (index, cookie, index, cookie, ...) to the child; never blocks.

        What the pipe cannot take now waits in a backlog that ``flush`` (and
        every later ``send``) writes on: the parent keeps reading replies
        meanwhile instead of sleeping in ``write`` while they pile up.
        """
        self._backlog += records
        self.flush()

    def flush(self) -> bool:
        """Write what the pipe takes of the backlog; True when nothing is left."""
        while self._backlog:
            try:
                written = os.write(self.jobs, self._backlog)
            except BlockingIOError:
                return False
            del self._backlog[:written]
        return True

    def errors(self) -> list[tuple[int, int]]:
        """(probe index, errno) of every send the kernel refused since the last call."""
        chunks = [self._partial]
        while True:
            try:
                chunk = os.read(self.errs, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        data = b"".join(chunks)
        whole = len(data) - len(data) % _RECORD
        self._partial = data[whole:]
        values = array("I")
        values.frombytes(data[:whole])
        return list(zip(values[0::2], values[1::2], strict=True))

    def close(self) -> None:
        """Stop the child once it has sent everything queued, and reap it."""
        if self.jobs < 0:
            return
        with contextlib.suppress(OSError):
            os.set_blocking(self.jobs, True)  # the backlog, then the stop record, all of it
            self.send(array("I", (STOP, 0)))
        os.close(self.jobs)
        self.jobs = -1
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        os.close(self.errs)


def _close_all_but(*keep: int) -> None:
    """Close every inherited descriptor but ``keep`` (and stdio) in the child.

    Other pipes must not stay open here: an earlier send worker, or the connect
    engine's workers, would wait on this process for an end-of-file.
    """
    low = 3
    for fd in sorted(fd for fd in set(keep) if fd >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _child(
    jobs: int,
    errs: int,
    targets: Sequence[tuple[BoundProbe, socket.socket, tuple[str, int]]],
    ports: Sequence[int],
) -> None:
    nports = len(ports)
    pending = b""
    while True:
        chunk = os.read(jobs, 1 << 16)
        if not chunk:
            return
        data = pending + chunk
        whole = len(data) - len(data) % _RECORD
        pending = data[whole:]
        records = array("I")
        records.frombytes(data[:whole])
        indices, cookies = records[0::2], records[1::2]
        stop = STOP in indices
        if stop:
            end = indices.index(STOP)
            del indices[end:], cookies[end:]
        hosts = set(map(nports.__rfloordiv__, indices))
        if len(hosts) == 1:  # the usual batch: one host's probes, built by columns
            probe, sock, address = targets[hosts.pop()]
            dports = array("H", map(ports.__getitem__, map(nports.__rmod__, indices)))
            packets = probe.patch_many(dports, cookies)
            _send_all(sock, address, packets, len(probe.buf), indices, errs)
        else:
            for idx, cookie in zip(indices, cookies, strict=True):
                probe, sock, address = targets[idx // nports]
                packet = probe.patch(ports[idx % nports], cookie)
                _send_all(sock, address, packet, len(packet), array("I", (idx,)), errs)
        if stop:
            return


def _send_all(
    sock: socket.socket,
    address: tuple[str, int],
    packets: bytearray,
    size: int,
    indices: array[int],
    errs: int,
) -> None:
    """Send ``packets`` (``size`` bytes each, probe ``indices[i]`` the i-th) in order.

    The sends run inside ``map`` (no Python statement per probe); a failing one
    is found by how far the offsets have gone, waited on when the kernel is
    only busy, reported up the error pipe when it refuses, and the rest go on.
    """
    view = memoryview(packets)
    count = len(indices)
    done = 0
    while done < count:
        starts = iter(range(done * size, count * size, size))
        slices = map(slice, starts, range((done + 1) * size, (count + 1) * size, size))
        try:
            deque(map(sock.sendto, map(view.__getitem__, slices), repeat(address)), maxlen=0)
            return
        except OSError as exc:
            failed = count - 1 - operator.length_hint(starts)
            if exc.errno in TRANSIENT:
                done = failed
                time.sleep(0.0005)
                continue
            refused = array("I", (indices[failed], exc.errno or 0))
            os.write(errs, refused.tobytes())
            done = failed + 1
