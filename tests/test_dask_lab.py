"""portlib.distributed on a real Dask cluster: a scheduler and two workers, each its own
process (``python -m dask scheduler``, ``python -m dask worker``) in the lab's scanner
namespace, scanning an AnyIP /24 with connect and with SYN.

Every probe of the lab is answered at once (22 and 443 open, 80 closed, the top /26
REJECTed with an ICMP error: filtered), so a scan retries nothing and the target
sees exactly one SYN per probe sent. An iptables rule at the head of the target's
INPUT chain counts the SYNs that arrive. Scans run with ``-Pn`` (``discovery=False``)
so that no ping adds SYNs of its own, paced, and with a fixed two-second probe timeout
so that a busy machine's slow reply is waited for rather than retried.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import portlib
from tests.lab import Lab, LabError
from tests.lab.anyip import AnyIPHost, SynCounter, add_anyip_host
from tests.lab.netns import kill_group, ns_argv
from tests.lab.procs import REPO_ROOT, python_env

pytestmark = pytest.mark.lab

PREFIX = "198.18.0.0/24"
LISTENING = (22, 443)
SCANNED = "22,80,443"
REJECTED = "198.18.0.192/26"
PROBES = 256 * 3
SCHEDULER = "tcp://127.0.0.1:8786"  # inside the scanner namespace: its own loopback
# Paced: an unpaced burst from two shards at once overflows the lab's queues now and
# then, and the kernel's SYN retransmissions and the scanner's retries would add probes.
QUICK = {"discovery": False, "timeout": 2.0, "rate": 500}
_READY_S = 60.0


@dataclass
class Summary:
    """A report reduced in the scanner namespace to plain data for the pipe."""

    verdicts: dict[tuple[str, int], str]
    duplicates: list[tuple[str, int]]
    hosts: dict[str, str]
    probes_sent: int
    interrupted: bool


def summarize(report: Any) -> Summary:
    verdicts: dict[tuple[str, int], str] = {}
    duplicates = []
    for host in report.hosts:
        for port in host.all_ports():
            key = (str(port.host), port.port)
            if key in verdicts:
                duplicates.append(key)
            verdicts[key] = port.state.value
    hosts = {str(h.address): h.state.value for h in report.hosts}
    return Summary(verdicts, duplicates, hosts, report.probes_sent, report.interrupted)


def distributed_scan(method: str, **options: Any) -> Summary:
    """Run in the scanner namespace: the scan as shards on the lab's cluster."""
    from distributed import Client

    import portlib.distributed

    with Client(SCHEDULER, timeout=30) as client:
        report = portlib.distributed.scan(PREFIX, SCANNED, client=client, method=method, **options)
    return summarize(report)


def plain_scan(method: str, **options: Any) -> Summary:
    """Run in the scanner namespace: the same scan, unsharded, in one process."""
    import portlib

    return summarize(portlib.scan(PREFIX, SCANNED, method=method, **options))


class Cluster:
    """The Dask processes this module started; each is stopped by its own process group."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _start(self, name: str, argv: list[str], ready: str, env: dict[str, str]) -> None:
        log_path = Path(self.lab.dir) / f"dask-{name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=REPO_ROOT,
                env=env, start_new_session=True,
            )  # fmt: skip
        self.procs[name] = proc
        deadline = time.monotonic() + _READY_S
        while ready not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"dask {name} did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)

    def start_scheduler(self) -> None:
        env = python_env()
        env["DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION"] = "1.0"  # one task per thread
        # --idle-timeout: a scheduler left behind by a killed test run stops by itself.
        argv = [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                "--port", SCHEDULER.rsplit(":", 1)[1], "--no-dashboard",
                "--idle-timeout", "300"]  # fmt: skip
        self._start("scheduler", ns_argv(self.lab.scanner_ns, argv), "Scheduler at:", env)

    def start_worker(self, name: str, *, without_net_raw: bool = False) -> None:
        argv = [sys.executable, "-m", "dask", "worker", SCHEDULER, "--name", name,
                "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                "--death-timeout", "60"]  # fmt: skip
        if without_net_raw:  # root still, but CAP_NET_RAW gone for good
            argv = ["setpriv", "--inh-caps=-all", "--bounding-set=-net_raw", *argv]
        self._start(name, ns_argv(self.lab.scanner_ns, argv), "Registered to:", python_env())

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        kill_group(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def close(self) -> None:
        for name in list(self.procs):
            self.kill(name)


@pytest.fixture(scope="module")
def target(module_lab: Lab) -> AnyIPHost:
    built = add_anyip_host(module_lab, PREFIX, ports=LISTENING, reject=[REJECTED])
    SynCounter(built).install()
    return built


@pytest.fixture(scope="module")
def cluster(module_lab: Lab, target: AnyIPHost) -> Iterator[Cluster]:
    started = Cluster(module_lab)
    try:
        started.start_scheduler()
        threads = [threading.Thread(target=started.start_worker, args=(n,)) for n in ("w1", "w2")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert {"w1", "w2"} <= set(started.procs), "a worker did not start"
        yield started
    finally:
        started.close()


@pytest.fixture
def syns(target: AnyIPHost) -> SynCounter:
    counter = SynCounter(target)
    counter.reset()
    return counter


def truth(target: AnyIPHost) -> dict[tuple[str, int], str]:
    ports = [int(p) for p in SCANNED.split(",")]
    return {(str(a), p): s for (a, p), s in target.truth(ports, discovery=False).items()}


@pytest.mark.parametrize("method", ["connect", "syn"])
def test_shards_on_two_workers_give_the_exact_report_and_no_probe_twice(
    module_lab: Lab, target: AnyIPHost, cluster: Cluster, syns: SynCounter, method: str
) -> None:
    started = time.perf_counter()
    merged = module_lab.call(distributed_scan, method, **QUICK)
    seconds = time.perf_counter() - started
    sent = syns.count()
    assert merged.duplicates == []
    assert merged.verdicts == truth(target)
    assert set(merged.hosts.values()) == {"up"} and len(merged.hosts) == 256
    assert not merged.interrupted
    # Each probe once: the shards split the space exactly, and nothing was retried.
    assert merged.probes_sent == PROBES
    assert sent == PROBES
    syns.reset()
    plain = module_lab.call(plain_scan, method, **QUICK)
    assert plain.verdicts == merged.verdicts and plain.hosts == merged.hosts
    assert syns.count() == PROBES
    print(f"{method}: {PROBES} probes in 2 shards, {sent} SYNs at the target, {seconds:.1f} s")


def test_the_cli_scans_on_the_cluster(
    module_lab: Lab, target: AnyIPHost, cluster: Cluster, syns: SynCounter
) -> None:
    argv = [sys.executable, "-m", "portlib", "scan", "--dask-scheduler", SCHEDULER,
            "--shards", "3", "-Pn", "-sS", "-p", SCANNED, "--max-rate", "500",
            "--timeout", "2s", "-oX", "-", PREFIX]  # fmt: skip
    done = module_lab.exec(argv, timeout=120)
    report = portlib.parse_report(done.stdout)
    assert summarize(report).verdicts == truth(target)
    assert syns.count() == PROBES
    assert done.stderr == ""


def test_the_cli_says_when_the_scheduler_is_not_there(module_lab: Lab) -> None:
    argv = [sys.executable, "-m", "portlib", "scan", "--dask-scheduler", "tcp://127.0.0.1:9",
            "-Pn", "-p", "22", PREFIX]  # fmt: skip
    done = module_lab.exec(argv, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("portlib: error: cannot reach the Dask scheduler at tcp://")
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_workers_and_writes_the_partial_report(
    module_lab: Lab, target: AnyIPHost, cluster: Cluster, syns: SynCounter, signum: int,
    status: int,
) -> None:  # fmt: skip
    """Ctrl-C (or SIGTERM) to the CLI: the shards stop on their workers (the target's SYN
    counter stops), and what they decided is written, marked interrupted."""
    out = Path(module_lab.dir) / f"partial-{signum}.xml"
    argv = [sys.executable, "-m", "portlib", "scan", "--dask-scheduler", SCHEDULER, "-Pn",
            "-sS", "-p", SCANNED, "--max-rate", "100", "--timeout", "2s", "-oX", str(out),
            PREFIX]  # fmt: skip
    proc = subprocess.Popen(ns_argv(module_lab.scanner_ns, argv), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=python_env(), cwd=REPO_ROOT)  # fmt: skip
    deadline = time.monotonic() + 60
    while syns.count() < 100 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    at_exit = syns.count()
    time.sleep(1.0)  # two polls of the stop event: a shard still running would show here
    assert proc.returncode == status, err
    assert syns.count() == at_exit < PROBES
    report = portlib.load_report(str(out))
    partial = summarize(report)
    assert report.interrupted and partial.duplicates == []
    assert 100 <= len(partial.verdicts) < PROBES
    everything = truth(target)
    assert all(everything[key] == state for key, state in partial.verdicts.items())


def test_a_worker_killed_mid_shard_has_its_shard_run_again(
    module_lab: Lab, target: AnyIPHost, cluster: Cluster, syns: SynCounter
) -> None:
    """SIGKILL to one worker while both scan: its shard runs again on the other one.

    At 150 probes/s a shard of 384 probes takes about 2.5 s; the kill comes once 100
    SYNs have arrived, well inside both shards."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["merged"] = module_lab.call(distributed_scan, "syn", **{**QUICK, "rate": 150})
        except BaseException as exc:
            box["error"] = exc

    scanning = threading.Thread(target=run)
    scanning.start()
    deadline = time.monotonic() + 60
    while syns.count() < 100 and time.monotonic() < deadline:
        time.sleep(0.02)
    at_kill = syns.count()
    cluster.kill("w1")
    scanning.join(timeout=120)
    try:
        assert "error" not in box, box.get("error")
        merged = box["merged"]
        sent = syns.count()
        assert 100 <= at_kill < PROBES
        assert merged.duplicates == []
        assert merged.verdicts == truth(target)
        assert not merged.interrupted
        # The two shards that finished sent every probe once; the killed attempt's probes
        # (some, at most its whole shard) reached the target a second time.
        assert merged.probes_sent == PROBES
        resent = sent - PROBES
        assert 0 < resent <= PROBES // 2, f"{sent} SYNs for {PROBES} probes"
        print(f"killed at {at_kill} SYNs; {sent} SYNs in all, {resent} from the lost attempt")
    finally:
        cluster.start_worker("w1")  # the next test has two workers again


def test_a_worker_without_cap_net_raw_is_named_for_a_syn_scan(
    module_lab: Lab, target: AnyIPHost, cluster: Cluster, syns: SynCounter
) -> None:
    cluster.start_worker("nocap", without_net_raw=True)
    try:
        with pytest.raises(portlib.PrivilegeError) as caught:
            module_lab.call(distributed_scan, "syn", timeout_s=60, **QUICK)
        message = str(caught.value)
        assert "CAP_NET_RAW" in message and "(nocap)" in message and "1 of 3" in message
        assert "(w1)" not in message and "(w2)" not in message
        assert syns.count() == 0  # refused before any shard was submitted
        # A connect scan needs no privilege: the same three workers run it.
        merged = module_lab.call(distributed_scan, "connect", **QUICK)
        assert merged.verdicts == truth(target) and merged.duplicates == []
        assert syns.count() == PROBES
    finally:
        cluster.kill("nocap")
