"""Exactness at scale: every (host, port) of a /20 against the AnyIP lab's ground truth.

One target namespace answers for 198.18.0.0/20 (tests/lab/anyip.py): 22 and 443
listen on every address, 80 is closed, one /24 DROPs everything (down with
discovery, filtered with -Pn) and one /24 REJECTs TCP (filtered, host up). Each scan
of connect and SYN, with and without discovery, must give exactly that state for each
of the 4096 x 3 probes, and list the down hosts as down with no ports.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator

import pytest

from tests.lab import Lab
from tests.lab.anyip import AnyIPHost, add_anyip_host, parse_range

pytestmark = pytest.mark.lab

PREFIX = "198.18.0.0/20"
LISTENING = (22, 443)
SCANNED = (22, 80, 443)
DROPPED = "198.18.15.0/24"
REJECTED = "198.18.14.0/24"

Verdicts = dict[tuple[ipaddress.IPv4Address, int], str]


def scan_states(
    method: str, discovery: bool
) -> tuple[Verdicts, list[ipaddress.IPv4Address], float]:
    """Run in the scanner namespace: the verdicts, the hosts reported down, the wall time.

    Reduced there, so only plain data comes back through the pipe. -T4 bounds the
    waits on the DROPped /24, which the connect scan times out probe by probe."""
    import portlib

    start = time.perf_counter()
    report = portlib.scan(PREFIX, ",".join(map(str, SCANNED)), method=method,
                          discovery=discovery, timing=4)  # fmt: skip
    elapsed = time.perf_counter() - start
    verdicts: Verdicts = {}
    down = []
    for host in report.hosts:
        if host.state.value == "down":
            down.append(ipaddress.IPv4Address(host.address))
        for port in host.all_ports():
            key = (ipaddress.IPv4Address(port.host), port.port)
            assert key not in verdicts, f"{key} reported twice"
            verdicts[key] = port.state.value
    return verdicts, down, elapsed


@pytest.fixture(scope="module")
def anyip(module_lab: Lab) -> Iterator[AnyIPHost]:
    yield add_anyip_host(module_lab, PREFIX, ports=LISTENING, drop=[DROPPED], reject=[REJECTED])


@pytest.mark.parametrize("discovery", [True, False], ids=["discovery", "no-ping"])
@pytest.mark.parametrize("method", ["connect", "syn"])
def test_every_probe_of_a_slash20_matches_the_truth(
    module_lab: Lab, anyip: AnyIPHost, method: str, discovery: bool
) -> None:
    verdicts, down, elapsed = module_lab.call(scan_states, method, discovery, timeout_s=300.0)
    truth = anyip.truth(SCANNED, discovery=discovery)
    wrong = {k: (verdicts.get(k), v) for k, v in truth.items() if verdicts.get(k) != v}
    extra = sorted(set(verdicts) - set(truth))
    assert not wrong, f"{len(wrong)} of {len(truth)} wrong, e.g. {sorted(wrong.items())[:5]}"
    assert not extra, f"{len(extra)} verdicts outside the truth, e.g. {extra[:5]}"
    expected_down = [a for a in anyip.addresses() if discovery and anyip.is_down(a)]
    assert sorted(down) == expected_down
    print(f"{method} discovery={discovery}: {len(truth)} probes exact in {elapsed:.1f} s")


def test_the_truth_covers_the_lab_as_built(anyip: AnyIPHost) -> None:
    """The ground truth itself: counts follow from the prefix, ports and ranges."""
    assert len(anyip.addresses()) == 4096
    states = anyip.truth(SCANNED, discovery=False)
    counts = {s: sum(1 for v in states.values() if v == s) for s in set(states.values())}
    # 3584 live addresses not rejected: 22 and 443 open, 80 closed; 2 x 256 filtered.
    assert counts == {"open": 3584 * 2, "closed": 3584, "filtered": 512 * 3}
    assert len(anyip.truth(SCANNED, discovery=True)) == (4096 - 256) * 3
    assert anyip.live_count() == 3840


@pytest.mark.parametrize(
    "spec",
    ["198.18.16.0/24", "198.18.0.9-198.18.0.1", "192.0.2.0/24", "198.18.0.1/20", "x"],
)
def test_ranges_outside_the_prefix_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_range(spec, ipaddress.IPv4Network(PREFIX))


def test_a_prefix_outside_the_benchmarking_range_is_refused(lab: Lab) -> None:
    with pytest.raises(ValueError, match="benchmarking range"):
        add_anyip_host(lab, "192.0.2.0/24")


def test_the_benchmark_reads_open_ports_from_each_tools_output() -> None:
    from benchmarks.bench_scale import open_from_grepable, open_from_masscan_list

    grepable = (
        "# Nmap 7.93 scan initiated as: nmap -sS -p 1-100 198.18.0.0/30\n"
        "Host: 198.18.0.1 ()\tStatus: Up\n"
        "Host: 198.18.0.1 ()\tPorts: 22/open/tcp//ssh///, 23/filtered/tcp//telnet///, "
        "80/open/tcp//http///\tIgnored State: closed (97)\n"
        "Host: 198.18.0.2 ()\tPorts: 53/open/udp//domain///\tIgnored State: closed (99)\n"
    )
    assert open_from_grepable(grepable) == {("198.18.0.1", 22), ("198.18.0.1", 80)}
    masscan = "#masscan\nopen tcp 80 198.18.0.5 1700000000\nopen tcp 22 198.18.0.6 1\n# end\n"
    assert open_from_masscan_list(masscan) == {("198.18.0.5", 80), ("198.18.0.6", 22)}


def test_open_ports_are_the_open_part_of_the_truth(anyip: AnyIPHost) -> None:
    truth = anyip.truth(range(1, 101), discovery=False)
    expected = {(str(a), p) for (a, p), state in truth.items() if state == "open"}
    assert anyip.open_ports(range(1, 101)) == expected
    assert len(expected) == 3584  # 22 is the one listening port in 1-100
