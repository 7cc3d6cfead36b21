"""Timing learned by one host group's run carries to the next (``LearnedTiming``):
a group of silent hosts is timed by the round trips earlier groups measured, not by
the first guess, and starts from the congestion window they ended with."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from portlib.model import ScanMethod
from portlib.scanning.options import ScanPlan
from portlib.scanning.timing import LearnedTiming, preset


async def two_runs(host: str) -> dict[str, object]:
    """A run over answering ports, then one over dropped ports, sharing one LearnedTiming."""
    from portlib.model import PortResult, Protocol
    from portlib.scanning.contract import ScanWork
    from portlib.scanning.raw.engine import RawEngine

    profile = preset(4)
    learned = LearnedTiming.for_profile(profile)
    verdicts: list[tuple[int, str]] = []

    async def emit(result: PortResult) -> None:
        verdicts.append((result.port, result.state.value))

    first = ScanWork((ip_address(host),), tuple(range(1, 301)), Protocol.TCP, profile, 1,
                     learned=learned)  # fmt: skip
    await RawEngine(ScanMethod.SYN).run(first, emit)
    after_first = {"samples": learned.rtt.samples, "cwnd": learned.cwnd, "rtt": learned.rtt}
    timeout_learned = learned.rtt.timeout
    second = ScanWork((ip_address(host),), (1001, 1002), Protocol.TCP, profile, 1,
                      learned=learned)  # fmt: skip
    await RawEngine(ScanMethod.SYN).run(second, emit)
    return {
        **after_first,
        "timeout_learned": timeout_learned,
        "initial": profile.initial_rtt_timeout,
        "same_estimator": learned.rtt is after_first["rtt"],
        "dropped": sorted(v for v in verdicts if v[0] > 1000),
        "count": len(verdicts),
    }


@pytest.mark.lab
def test_a_second_run_starts_from_what_the_first_learned(module_lab) -> None:  # type: ignore[no-untyped-def]
    host = module_lab.add_host("learned")
    host.serve_tcp([22, 80])
    host.drop([1001, 1002], proto="tcp")
    found = module_lab.call(two_runs, str(host.v4))
    assert found["samples"] > 0  # the first run measured round trips into the shared estimator
    assert found["cwnd"] is not None and found["cwnd"] >= 64
    assert found["timeout_learned"] < found["initial"]
    assert found["same_estimator"]
    assert found["dropped"] == [(1001, "filtered"), (1002, "filtered")]
    assert found["count"] == 302


def test_each_method_gets_its_own_learned_timing() -> None:
    from portlib.model import Protocol

    plan = ScanPlan(
        port_methods=(ScanMethod.SYN, ScanMethod.UDP),
        ports={Protocol.TCP: (22,), Protocol.UDP: (53,)},
        timing=preset(3), seed=0, shard=None, sequential=False, discovery="none",
        host_timeout=None, detection=None,
    )  # fmt: skip
    learned = {m: LearnedTiming.for_profile(plan.timing) for m in plan.port_methods}
    syn, udp = plan.works((ip_address("192.0.2.1"),), learned)
    assert syn.learned is learned[ScanMethod.SYN] and udp.learned is learned[ScanMethod.UDP]
    assert plan.works((ip_address("192.0.2.1"),))[0].learned is None
