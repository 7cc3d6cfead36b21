"""Socket table speed: portlib against psutil, ``ss`` and ``lsof -i`` on 18,000 sockets.

Two helper processes hold N established loopback TCP connections (N server
sockets plus a listener in one, N client sockets in the other; each stays
under the usual 20,000 open-file limit). Then, in the same run, interleaved:

- ``portlib.sockets("tcp", processes=True)`` vs ``psutil.net_connections("tcp")``
  in this process (target: at most 0.3x);
- ``sockets("tcp", filter="state established dport = :P")``, in this process, vs
  ``ss -tn state established dport = :P`` (target: at most 1.5x; the kernel filters
  for both), and vs portlib's own unfiltered listing (target: below 1.0x);
- ``portlib sockets -tanp`` vs ``ss -tanp`` as whole commands, Python start-up
  included (target: at most 1.5x);
- ``portlib who PORT`` vs ``lsof -nP -i :PORT`` on the listening port, which 18,001
  sockets have at one end or the other (target: at most 1.0x).

As root the run happens in a fresh network namespace of its own (``--here``: this one),
so other work on the machine and TIME-WAIT sockets of earlier runs stay out of it.
Each row also checks both sides saw the same sockets and owners on the
benchmark port. Run: ``python -m benchmarks.bench_sockets [--connections N] [--runs R]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.common import (
    Row,
    interleaved_runs,
    peer_missing,
    timed_env,
    write_results,
)

ROOT = Path(__file__).resolve().parent.parent
PORTLIB_CMD = [sys.executable, "-m", "portlib"]


# -- the connection holders (run as `python -m benchmarks.bench_sockets --hold ...`) ----------


def _raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# Abortive close at exit (RST): the next run's table holds no TIME-WAIT sockets of this one.
_LINGER_0 = struct.pack("ii", 1, 0)


def _hold_server(count: int) -> None:
    _raise_nofile()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    print(listener.getsockname()[1], flush=True)
    accepted = [listener.accept()[0] for _ in range(count)]
    for s in accepted:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
    print("READY", len(accepted), flush=True)
    sys.stdin.read()  # hold everything until the benchmark closes our stdin


def _hold_clients(port: int, count: int) -> None:
    _raise_nofile()
    clients = []
    for _ in range(count):
        c = socket.socket()
        c.connect(("127.0.0.1", port))
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
        clients.append(c)
    print("READY", len(clients), flush=True)
    sys.stdin.read()


class Connections:
    """N established loopback connections held by two helper processes."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.server = self._start("server", str(count))
        self.port = int(self.server.stdout.readline())
        self.clients = self._start("clients", str(self.port), str(count))
        for proc in (self.server, self.clients):
            line = proc.stdout.readline()
            if not line.startswith("READY"):
                self.close()
                raise RuntimeError(f"connection holder failed: {line!r}")
        self.pids = {self.server.pid, self.clients.pid}

    @staticmethod
    def _start(*args: str) -> subprocess.Popen[str]:
        argv = [sys.executable, "-m", "benchmarks.bench_sockets", "--hold", *args]
        return subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )

    def close(self) -> None:
        for proc in (self.server, self.clients):
            if proc.poll() is None:
                proc.stdin.close()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


# -- what each side saw, reduced to comparable sets ------------------------------------------


def _portlib_view(port: int) -> set[tuple[str, str, tuple[int, ...]]]:
    import portlib

    seen = set()
    for s in portlib.sockets("tcp", processes=True):
        if port in (s.local.port, s.remote.port):  # type: ignore[union-attr]
            pids = tuple(sorted({o.pid for o in s.owners}))
            seen.add((str(s.local), str(s.remote), pids))  # type: ignore[union-attr]
    return seen


def _psutil_view(port: int) -> set[tuple[str, str, tuple[int, ...]]]:
    import psutil

    by_socket: dict[tuple[str, str], set[int]] = {}
    for c in psutil.net_connections("tcp"):
        if c.laddr and port in (c.laddr.port, c.raddr.port if c.raddr else None):
            remote = f"{c.raddr.ip}:{c.raddr.port}" if c.raddr else f"{'0.0.0.0'}:0"
            by_socket.setdefault((f"{c.laddr.ip}:{c.laddr.port}", remote), set()).add(c.pid)
    return {(k[0], k[1], tuple(sorted(p for p in v if p))) for k, v in by_socket.items()}


def _table_lines(output: str, port: int) -> set[tuple[str, str, str]]:
    """(local, peer, process column) of each ss-style line touching ``port``."""
    seen = set()
    needle = f":{port}"
    for line in output.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5 and (cols[3].endswith(needle) or cols[4].endswith(needle)):
            users = cols[5] if len(cols) > 5 else ""
            seen.add((cols[3], cols[4], ",".join(sorted(_pids_in(users)))))
    return seen


def _pids_in(users: str) -> list[str]:
    return [part.split(",")[0] for part in users.split("pid=")[1:]]


def _who_rows(output: str) -> set[tuple[str, str]]:
    """(pid, fd) of each row of ``portlib who``'s table, fds written as lsof writes them."""
    rows = (line.split() for line in output.splitlines()[1:])
    return {(cols[1], _lsof_fd(cols[3])) for cols in rows if len(cols) >= 7}


def _lsof_fd(fd: str) -> str:
    # lsof's FD column holds 4 digits: fd 10005 prints as "*005".
    return f"*{fd[-3:]}" if len(fd) > 4 else fd


def _lsof_rows(output: str) -> set[tuple[str, str]]:
    """(pid, fd) of each lsof row (``lsof -i :PORT`` matches either end, as who does)."""
    rows = set()
    for line in output.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 9:
            rows.add((cols[1], cols[3].rstrip("uwr")))
    return rows


# -- the rows ---------------------------------------------------------------------------------


def _interleaved(
    ours: Callable[[], object], theirs: Callable[[], object], runs: int
) -> tuple[float, float]:
    mine, peer, _, _ = interleaved_runs(ours, theirs, runs)
    return statistics.median(mine), statistics.median(peer)


def bench_in_process(conns: Connections, runs: int) -> Row:
    import portlib

    name = "sockets('tcp', processes=True)"
    try:
        import psutil
    except ImportError:
        return Row(name, "psutil", None, None, runs, 0.3, skipped="psutil missing")
    ours, theirs = _interleaved(
        lambda: portlib.sockets("tcp", processes=True),
        lambda: psutil.net_connections("tcp"),
        runs,
    )
    total_ours, total_theirs = len(portlib.sockets("tcp")), len(psutil.net_connections("tcp"))
    view_ours, view_theirs = _portlib_view(conns.port), _psutil_view(conns.port)
    return Row(
        name,
        f"psutil {psutil.__version__} net_connections('tcp')",
        ours,
        theirs,
        runs,
        0.3,
        agreed=view_ours == view_theirs and len(view_ours) == 2 * conns.count + 1,
        detail={
            "sockets_portlib": total_ours,
            "sockets_psutil": total_theirs,
            "port_sockets_portlib": len(view_ours),
            "port_sockets_psutil": len(view_theirs),
        },
    )


def _filtered_view(found: Sequence[object]) -> set[tuple[str, str]]:
    return {(str(s.local), str(s.remote)) for s in found}  # type: ignore[attr-defined]


def _ss_view(output: str) -> set[tuple[str, str]]:
    """(local, peer) of ``ss -tn state established ...`` (which prints no State column)."""
    return {tuple(line.split()[2:4]) for line in output.splitlines()[1:]}  # type: ignore[misc]


def bench_filtered(conns: Connections, runs: int) -> list[Row]:
    """The kernel filters: portlib in-process vs ss, and vs portlib's unfiltered listing."""
    import portlib

    text = f"state established dport = :{conns.port}"
    name = f"sockets('tcp', filter='{text}')"
    ours_fn = lambda: portlib.sockets("tcp", filter=text, processes=False)  # noqa: E731
    rows = []
    if reason := peer_missing("ss"):
        rows.append(Row(name, f"ss -tn {text}", None, None, runs, 1.5, skipped=reason))
    else:
        argv = ["ss", "-tn", *text.split()]
        last: list[str] = []

        def ss() -> None:
            last[:] = [subprocess.run(argv, capture_output=True, text=True, check=True).stdout]

        ours, theirs = _interleaved(ours_fn, ss, runs)
        seen_ours, seen_ss = _filtered_view(ours_fn()), _ss_view(last[0])
        rows.append(
            Row(
                name,
                f"ss -tn {text} (a whole command)",
                ours,
                theirs,
                runs,
                1.5,
                agreed=seen_ours == seen_ss and len(seen_ours) == conns.count,
                detail={"sockets_portlib": len(seen_ours), "sockets_ss": len(seen_ss)},
            )
        )
    unfiltered = lambda: portlib.sockets("tcp", processes=False)  # noqa: E731
    ours, theirs = _interleaved(ours_fn, unfiltered, runs)
    everything = unfiltered()
    expected = {
        (str(s.local), str(s.remote))
        for s in everything
        if s.state is portlib.SocketState.ESTABLISHED and s.remote.port == conns.port
    }
    rows.append(
        Row(
            name,
            "portlib sockets('tcp') unfiltered",
            ours,
            theirs,
            runs,
            1.0,
            agreed=_filtered_view(ours_fn()) == expected,
            detail={"sockets_filtered": len(expected), "sockets_unfiltered": len(everything)},
        )
    )
    return rows


def _commands(
    ours: Sequence[str], theirs: Sequence[str], runs: int
) -> tuple[float, float, str, str]:
    """Both commands, interleaved; their medians and last outputs."""
    out: dict[int, str] = {}

    def runner(argv: Sequence[str], key: int) -> Callable[[], None]:
        def run() -> None:
            out[key] = subprocess.run(
                list(argv), capture_output=True, text=True, check=True, cwd=ROOT, env=timed_env()
            ).stdout

        return run

    mine, peer = _interleaved(runner(ours, 0), runner(theirs, 1), runs)
    return mine, peer, out[0], out[1]


def bench_cli_sockets(conns: Connections, runs: int) -> Row:
    name = "portlib sockets -tanp"
    if reason := peer_missing("ss"):
        return Row(name, "ss -tanp", None, None, runs, 1.5, skipped=reason)
    ours, theirs, out_ours, out_theirs = _commands(
        [*PORTLIB_CMD, "sockets", "-tanp"], ["ss", "-tanp"], runs
    )
    seen_ours, seen_theirs = (
        _table_lines(out_ours, conns.port),
        _table_lines(out_theirs, conns.port),
    )
    return Row(
        name,
        "ss -tanp",
        ours,
        theirs,
        runs,
        1.5,
        agreed=seen_ours == seen_theirs and len(seen_ours) == 2 * conns.count + 1,
        detail={
            "lines_portlib": out_ours.count("\n") - 1,
            "lines_ss": out_theirs.count("\n") - 1,
            "port_sockets_portlib": len(seen_ours),
            "port_sockets_ss": len(seen_theirs),
        },
    )


def bench_cli_who(conns: Connections, runs: int) -> Row:
    name = f"portlib who {conns.port}"
    if reason := peer_missing("lsof"):
        return Row(name, "lsof -nP -i :PORT", None, None, runs, 1.0, skipped=reason)
    ours, theirs, out_ours, out_theirs = _commands(
        [*PORTLIB_CMD, "who", str(conns.port)], ["lsof", "-nP", "-i", f":{conns.port}"], runs
    )
    rows_ours, rows_theirs = _who_rows(out_ours), _lsof_rows(out_theirs)
    return Row(
        name,
        "lsof -nP -i :PORT",
        ours,
        theirs,
        runs,
        1.0,
        agreed=rows_ours == rows_theirs and len(rows_ours) == 2 * conns.count + 1,
        detail={"owner_rows_portlib": len(rows_ours), "rows_lsof": len(rows_theirs)},
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_sockets", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--connections", type=int, default=9_000, help="established connections (default 9000)"
    )
    parser.add_argument("--runs", type=int, default=9, help="timed runs per side (default 9)")
    parser.add_argument("--quick", action="store_true", help="2000 connections, 3 runs")
    parser.add_argument(
        "--here",
        action="store_true",
        help="run in this network namespace (as root the default is a fresh one of its own)",
    )
    parser.add_argument("--hold", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.hold:
        if args.hold[0] == "server":
            _hold_server(int(args.hold[1]))
        else:
            _hold_clients(int(args.hold[1]), int(args.hold[2]))
        return 0
    if not args.here and os.geteuid() == 0 and shutil.which("ip"):
        return _in_own_namespace(list(sys.argv[1:] if argv is None else argv))
    if args.quick:
        args.connections, args.runs = 2000, 3
    started = time.perf_counter()
    conns = Connections(args.connections)
    ready = time.perf_counter() - started
    print(
        f"{args.connections} connections on 127.0.0.1:{conns.port} in {ready:.1f}s", file=sys.stderr
    )
    try:
        rows = [
            bench_in_process(conns, args.runs),
            *bench_filtered(conns, args.runs),
            bench_cli_sockets(conns, max(3, args.runs // 2 + 1)),
            bench_cli_who(conns, max(3, args.runs // 2 + 1)),
        ]
    finally:
        conns.close()
    for row in rows:
        row.detail["connections"] = args.connections
        row.detail["load_average_1m"] = round(os.getloadavg()[0], 2)
    write_results("sockets", rows)
    return 0


def _in_own_namespace(argv: list[str]) -> int:
    """Run this benchmark inside a fresh network namespace, so the table holds only its sockets.

    Other work on the machine (and TIME-WAIT sockets of earlier runs) would make every
    side slower by its own amount; in a namespace of its own each side sees exactly the
    benchmark's connections. Named like the test lab's, so a stale one is cleaned up.
    """
    from tests.lab import netns

    name = f"{netns.new_lab_id()}-bench"
    netns.clean_stale()
    netns.add_namespace(name)
    try:
        netns.ip_batch(name, ["link set lo up"])
        inside = [sys.executable, "-m", "benchmarks.bench_sockets", *argv, "--here"]
        env = timed_env(PYTHONPATH=str(ROOT))
        return subprocess.run(netns.ns_argv(name, inside), cwd=ROOT, env=env).returncode
    finally:
        netns.delete_namespace(name)


if __name__ == "__main__":
    sys.exit(main())
