"""ConnectEngine against lab hosts: every state exact, also with loss and delay.

Each target serves 22, 80 and 443, DROPs 81-82, REJECTs 83 with
icmp-admin-prohibited and 84 with tcp-reset; 85-90 have nothing. The engine runs
inside the lab's scanner namespace (``lab.call``), through tests.connect_probe.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.lab import Lab, LabHost

pytestmark = pytest.mark.lab

PORTS = list(range(20, 25)) + list(range(78, 92)) + [443]
SERVED = [22, 80, 443]


def expected(host: str) -> list[tuple[str, int, str, str]]:
    table = {p: ("closed", "conn-refused") for p in PORTS}
    table.update({p: ("open", "syn-ack") for p in SERVED})
    table.update({81: ("filtered", "no-response"), 82: ("filtered", "no-response")})
    table[83] = ("filtered", "admin-prohibited")
    table[84] = ("closed", "conn-refused")  # a RST, as nmap -sT calls it
    return sorted((host, p, *table[p]) for p in PORTS)


def _furnish(host: LabHost) -> LabHost:
    host.serve_tcp(SERVED)
    host.drop([81, 82], proto="tcp")
    host.reject([83], proto="tcp", with_="icmp-admin-prohibited")
    host.reject([84], proto="tcp", with_="tcp-reset")
    return host


@dataclass
class Hosts:
    lab: Lab
    plain: LabHost
    lossy: LabHost
    slow: LabHost


@pytest.fixture(scope="module")
def hosts(module_lab: Lab) -> Iterator[Hosts]:
    plain = _furnish(module_lab.add_host("plain"))
    lossy = _furnish(module_lab.add_host("lossy"))
    lossy.loss(0.10)  # each direction: a round trip fails 19% of the time
    slow = _furnish(module_lab.add_delayed_host("slow", delay=0.05, jitter=0.01, seed=4))
    yield Hosts(module_lab, plain, lossy, slow)


def _scan(lab: Lab, host: str, **kwargs: object) -> object:
    return lab.call("tests.connect_probe.run_engine", host, PORTS, timeout_s=180, **kwargs)


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_every_state_exact(hosts: Hosts, family: str) -> None:
    host = str(getattr(hosts.plain, family))
    assert _scan(hosts.lab, host) == expected(host)


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_exact_under_ten_percent_loss(hosts: Hosts, family: str) -> None:
    host = str(getattr(hosts.lossy, family))
    for seed in (1, 2):
        assert _scan(hosts.lab, host, seed=seed) == expected(host)


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_exact_with_50ms_jittered_delay(hosts: Hosts, family: str) -> None:
    host = str(getattr(hosts.slow, family))
    assert _scan(hosts.lab, host, timing=3) == expected(host)


def test_many_hosts_at_once(hosts: Hosts) -> None:
    names = [str(hosts.plain.v4), str(hosts.slow.v4), str(hosts.plain.v6)]
    got = _scan(hosts.lab, names)  # type: ignore[arg-type]
    assert got == sorted(v for h in names for v in expected(h))
