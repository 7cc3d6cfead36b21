"""portlib.distributed's checks and defaults, on an in-process Dask cluster (its scheduler
and workers talk over inproc://, no socket), scanning loopback only. The real
processes, namespaces and lost workers are tests/test_dask_lab.py's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import portlib
import portlib.distributed
from portlib.errors import ScanError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    from distributed import Client

    with Client(
        processes=False, n_workers=2, threads_per_worker=2, dashboard_address=None
    ) as started:
        yield started


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def _python(code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=60)  # fmt: skip


def test_importing_portlib_and_its_distributed_module_loads_no_dask() -> None:
    done = _python(
        "import sys, portlib, portlib.distributed\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'dask', 'distributed'}))"
    )
    assert done.stdout.strip() == "[]", done.stderr


def test_without_dask_the_error_says_how_to_install_it() -> None:
    # -S: no site-packages, so no Dask (portlib itself needs none of them to start).
    done = _python(
        "import portlib.distributed\n"
        "try:\n"
        "    portlib.distributed.scan('127.0.0.1', [1], client=None)\n"
        "except portlib.ScanError as exc:\n"
        "    print(exc)\n",
        "-S",
    )
    assert "pip install 'portlib[dask]'" in done.stdout, done.stderr
    argv = ["scan", "--dask-scheduler", "tcp://127.0.0.1:9", "-Pn", "127.0.0.1"]
    cli = _python(f"from portlib.cli import main; raise SystemExit(main({argv!r}))", "-S")
    assert cli.returncode == 2
    assert cli.stderr.strip().endswith("install it with: pip install 'portlib[dask]'")
    assert cli.stderr.count("\n") == 1


def test_the_sharded_scan_equals_the_plain_one(client: Any, listener: int) -> None:
    ports = [listener, *range(1, 40)]
    merged = portlib.distributed.scan("127.0.0.1", ports, client=client, discovery=False)
    plain = portlib.scan("127.0.0.1", ports, discovery=False)
    assert [(p.port, p.state) for p in merged.hosts[0].all_ports()] == [
        (p.port, p.state) for p in plain.hosts[0].all_ports()
    ]
    # Folded exactly as the scan in one process folds its host.
    assert merged.hosts[0].extra_ports == plain.hosts[0].extra_ports
    assert [(p.port, p.state) for p in merged.hosts[0].ports] == [
        (p.port, p.state) for p in plain.hosts[0].ports
    ]
    assert merged.hosts[0].extra_ports[0].count == len(ports) - 1
    assert [p.port for p in merged.open_ports()] == [listener]
    assert merged.probes_sent == len(ports)  # four shards (threads), each probe once


def test_shards_default_to_the_worker_threads(client: Any) -> None:
    report = portlib.distributed.scan(
        "127.0.0.1", [1], client=client, discovery=False, args=("a", "b")
    )
    # Four shards of a one-probe space: one shard probes it, all four report the host.
    assert report.probes_sent == 1 and report.args == ("a", "b")
    assert sum(client.nthreads().values()) == 4


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"shards": 0}, "shards must be a whole number of at least 1, not 0"),
        ({"shards": True}, "shards must be a whole number"),
        ({"shard": (0, 2)}, r"shard=\(0, 2\) cannot go to a distributed scan"),
        ({"on_progress": print}, "on_progress=.* cannot go to a distributed scan"),
        ({"on_host": print}, "on_host=.* cannot go to a distributed scan"),
        ({"keep_hosts": False}, "keep_hosts=False cannot go to a distributed scan"),
        ({"fold": "yes"}, "fold must be True or False"),
        ({"host_timeout": 5}, "host_timeout cannot be combined with shard"),
        ({"method": "bogus"}, "unknown scan method 'bogus'"),
        ({"method": "ping"}, "a ping scan .* has no ports to split"),
        ({"seed": -1}, "seed must be in 0"),
        ({"exclude": "127.0.0.1"}, "no targets left"),
    ],
)
def test_bad_options_are_refused_before_any_task(
    client: Any, options: dict[str, Any], words: str
) -> None:
    with pytest.raises(portlib.PortlibError, match=words):
        portlib.distributed.scan("127.0.0.1", [1], client=client, **options)


def test_the_client_must_be_a_dask_client() -> None:
    with pytest.raises(ScanError, match=r"client must be a dask\.distributed\.Client"):
        portlib.distributed.scan("127.0.0.1", [1], client="tcp://127.0.0.1:8786")  # type: ignore[arg-type]


def test_bad_scheduler_addresses_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from portlib.cli import main

    for address, words in (("nonsense", "missing port number"), ("foo://h:1", "unknown scheme")):
        assert main(["scan", "--dask-scheduler", address, "-Pn", "127.0.0.1"]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1
    assert main(["scan", "--shards", "2", "-Pn", "127.0.0.1"]) == 2
    assert "--shards N goes with --dask-scheduler" in capsys.readouterr().err


def test_ctrl_c_stops_every_shard_and_returns_what_they_decided(client: Any) -> None:
    """KeyboardInterrupt in the caller (as Ctrl-C raises it) while four of eight shards
    scan 2000 ports at 100 probes/s each: the four stop within a poll, the four queued
    ones return without starting, and the merge is partial."""
    import signal
    import threading
    import time

    main_thread = threading.main_thread().ident
    assert main_thread is not None
    timer = threading.Timer(1.5, signal.pthread_kill, (main_thread, signal.SIGINT))
    started = time.monotonic()
    timer.start()
    try:
        report = portlib.distributed.scan(
            "127.0.0.1", "1-2000", client=client, shards=8, discovery=False, rate=100
        )
    finally:
        timer.cancel()
    seconds = time.monotonic() - started
    decided = report.hosts[0].all_ports()
    assert report.interrupted
    assert 0 < len(decided) < 2000 and len({p.port for p in decided}) == len(decided)
    assert report.probes_sent < 1000  # the four shards that ran, part of theirs each
    assert seconds < 4, f"the shards took {seconds:.1f} s to stop"
    print(f"stopped after {seconds:.1f} s: {len(decided)} of 2000 decided")
