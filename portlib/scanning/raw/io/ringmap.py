"""A packet socket's memory-mapped ring, set up and let go in threads.

Setting a ring up (``PACKET_RX_RING``, ``PACKET_TX_RING``) and releasing its
socket each wait for an RCU grace period in the kernel (``synchronize_net``,
~10 ms each, twice at release), with nothing for us to do meanwhile. So a
thread makes those calls, through ``ctypes``, which lets go of the GIL, while
the scan sets itself up or builds its report. The map is libc's ``mmap``, not
Python's, which would hold a second descriptor of the socket: once the
socket's own descriptor is closed (at once, by its owner), the mapping is the
last hold on it, and the thread's ``munmap`` lets it go.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import socket
import threading

SOL_PACKET = 263
MADV_DONTFORK = 10

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setsockopt.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_char_p]
_libc.setsockopt.argtypes += [ctypes.c_uint]
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int]
_libc.mmap.argtypes += [ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_MAP_FAILED = ctypes.c_void_p(-1).value

RingView = ctypes.Array[ctypes.c_char]
"""The mapped ring: indexes give 1-byte ``bytes``, slices ``bytes``; a writable buffer."""


def _check(result: int) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


class RingMap:
    """``options`` (``SOL_PACKET`` option, value) set on ``sock``, then ``size`` bytes mapped.

    ``ready()`` waits for that and gives the map (``OSError`` if the kernel
    refused). ``close()``, called after the socket's ``close()``, unmaps it in
    a thread. Forked processes (the send workers) do not inherit the map.
    """

    __slots__ = ("_addr", "_error", "_setup", "_size", "_view")

    def __init__(self, sock: socket.socket, options: list[tuple[int, bytes]], size: int) -> None:
        self._size = size
        self._addr = 0
        self._view: RingView | None = None
        self._error: OSError | None = None
        self._setup = threading.Thread(
            target=self._set_up, args=(sock.fileno(), options), name="portlib-ring"
        )
        self._setup.start()

    def _set_up(self, fd: int, options: list[tuple[int, bytes]]) -> None:
        try:
            for option, value in options:
                _check(_libc.setsockopt(fd, SOL_PACKET, option, value, len(value)))
            prot, flags = mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED
            addr = _libc.mmap(None, self._size, prot, flags, fd, 0)
            if addr is None or addr == _MAP_FAILED:
                _check(-1)
            self._addr = addr
            _libc.madvise(addr, self._size, MADV_DONTFORK)  # fewer page tables to fork
        except OSError as exc:
            self._error = exc

    def ready(self) -> RingView:
        """The mapped ring, once set up; ``OSError`` if the kernel gave none."""
        if self._view is None:
            self._setup.join()
            if self._error is not None:
                raise self._error
            self._view = (ctypes.c_char * self._size).from_address(self._addr)
        return self._view

    def close(self) -> None:
        """Unmap (in a thread): drop every reference to the view first."""
        self._setup.join()
        self._view = None
        if self._addr:
            addr, self._addr = self._addr, 0
            threading.Thread(target=_libc.munmap, args=(addr, self._size)).start()
