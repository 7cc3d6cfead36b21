"""The streaming pipeline: targets read lazily in host groups, each group finished
(folded, handed to ``on_host``, let go) before the next one's verdicts begin.

Real connect scans of loopback addresses, with listeners the tests open. The group
size is set small through ``GROUP_PROBES`` (the pipeline's tuning, not a mock) so
that a few hosts make several groups.
"""

from __future__ import annotations

import socket
import tracemalloc
from collections.abc import Iterator
from ipaddress import ip_address

import pytest

from portlib.model import HostResult, HostState, PortState
from portlib.scanning import Scanner, scan, scan_async
from portlib.scanning import groups as groups_module

HOSTS = [f"127.0.0.{n}" for n in range(1, 7)]
PORTS = list(range(1, 49))  # plus each host's listener: 49 ports, so 2 hosts per group


@pytest.fixture
def listeners() -> Iterator[dict[str, int]]:
    """One listener on each test address; address -> its port."""
    socks = []
    try:
        for address in HOSTS:
            sock = socket.socket()
            sock.bind((address, 0))
            sock.listen()
            socks.append(sock)
        yield {s.getsockname()[0]: s.getsockname()[1] for s in socks}
    finally:
        for sock in socks:
            sock.close()


@pytest.fixture
def small_groups(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(groups_module, "GROUP_PROBES", 110)
    return 2  # hosts per group at 49..55 ports per host


def ports_for(listeners: dict[str, int]) -> list[int]:
    return PORTS + sorted(listeners.values())


async def test_groups_finish_in_target_order_folded_and_one_at_a_time(
    listeners: dict[str, int], small_groups: int
) -> None:
    ports = ports_for(listeners)
    finished: list[HostResult] = []
    decided_at_finish: list[int] = []
    scanner: Scanner

    def on_host(host: HostResult) -> None:
        finished.append(host)
        decided_at_finish.append(scanner.progress[0])

    scanner = Scanner(",".join(HOSTS), ports, discovery=False, on_host=on_host)
    async with scanner as results:
        async for _ in results:
            pass
    report = results.report()
    assert [str(h.address) for h in finished] == HOSTS
    assert report.hosts == tuple(finished)
    # A group is finished before any verdict of the next one is decided.
    per_group = small_groups * len(ports)
    for index, decided in enumerate(decided_at_finish):
        assert decided == (index // small_groups + 1) * per_group
    assert results.progress == (len(HOSTS) * len(ports), len(HOSTS) * len(ports))
    for host in finished:
        mine = listeners[str(host.address)]
        assert [(p.port, p.state) for p in host.ports] == [(mine, PortState.OPEN)]
        (closed,) = host.extra_ports
        assert closed.state is PortState.CLOSED and closed.count == len(ports) - 1
        assert [p.port for p in host.all_ports()] == sorted(ports)


async def test_hosts_not_kept_and_not_folded(listeners: dict[str, int], small_groups: int) -> None:
    ports = ports_for(listeners)
    seen: list[HostResult] = []
    report = await scan_async(
        ",".join(HOSTS), ports, discovery=False, on_host=seen.append, keep_hosts=False, fold=False
    )
    assert report.hosts == () and not report.interrupted
    assert [str(h.address) for h in seen] == HOSTS
    for host in seen:
        assert host.extra_ports == () and [p.port for p in host.ports] == sorted(ports)


async def test_an_interrupt_finishes_the_group_in_progress_only(
    listeners: dict[str, int], small_groups: int
) -> None:
    seen: list[HostResult] = []
    second_group = ip_address(HOSTS[small_groups])
    async with Scanner(
        ",".join(HOSTS), ports_for(listeners), discovery=False, on_host=seen.append, rate=2000
    ) as results:
        async for result in results:
            if result.host == second_group:
                break
    report = results.report()
    assert report.interrupted
    reached = HOSTS[: 2 * small_groups]  # the first group, and the one interrupted
    assert [str(h.address) for h in report.hosts] == reached
    assert report.hosts == tuple(seen)
    first, interrupted = report.hosts[:small_groups], report.hosts[small_groups:]
    assert all(len(h.all_ports()) == len(ports_for(listeners)) for h in first)
    assert any(h.all_ports() for h in interrupted)
    assert all(h.state is HostState.UP for h in report.hosts)


def test_shards_partition_every_group_exactly(listeners: dict[str, int], small_groups: int) -> None:
    ports = ports_for(listeners)
    probed: list[tuple[str, int]] = []
    for index in range(3):
        report = scan(",".join(HOSTS), ports, discovery=False, shard=(index, 3), seed=7)
        probed += [(str(p.host), p.port) for h in report.hosts for p in h.all_ports()]
    assert len(probed) == len(set(probed)) == len(HOSTS) * len(ports)


async def test_a_huge_target_list_is_read_lazily() -> None:
    """The first verdicts of 127.0.0.0/8 (16.7 million targets) come while memory
    holds one group, not the list: the targets are never materialised."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        tracemalloc.start()
        try:
            async with Scanner("127.0.0.0/8", [port], discovery=False) as results:
                async for result in results:
                    if result.host == ip_address("127.0.0.1"):
                        assert result.state is PortState.OPEN
                        break
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    report = results.report()
    assert report.interrupted
    assert len(report.hosts) <= groups_module.MAX_GROUP_HOSTS
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB traced before the first verdicts"
