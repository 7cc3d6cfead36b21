"""``min_rate`` (nmap's ``--min-rate``) keeps a scan going past its window (needs root).

A host DROPs every port it is asked about, so nothing ever answers and the congestion
window never opens; with two probes in flight at most, 300 ports at a 0.2 s timeout
take 30 s. At ``min_rate=600`` the engines send past that cap and the scan ends in
about half a second; the test allows 20 s, so only a scan that ignores ``min_rate``
runs out of time. Both engines, same verdicts.
"""

from __future__ import annotations

import pytest

from tests.lab import LabTimeout

pytestmark = pytest.mark.lab

PORTS = list(range(3000, 3300))


def silent_scan(host: str, method: str, min_rate: float | None) -> dict[str, int]:
    """Run in the scanner namespace: the states found, counted."""
    from collections import Counter

    import portlib

    report = portlib.scan(
        host,
        f"{PORTS[0]}-{PORTS[-1]}",
        method=method,
        discovery=False,
        concurrency=2,
        retries=0,
        timeout=0.2,
        min_rate=min_rate,
    )
    return dict(Counter(p.state.value for p in report.hosts[0].all_ports()))


@pytest.fixture(scope="module")
def dropping(module_lab):  # type: ignore[no-untyped-def]
    host = module_lab.add_host("dropper")
    host.drop(PORTS, proto="tcp")
    return host


@pytest.mark.parametrize("method", ["connect", "syn"])
def test_min_rate_sends_past_the_window(module_lab, dropping, method: str) -> None:  # type: ignore[no-untyped-def]
    found = module_lab.call(silent_scan, str(dropping.v4), method, 600.0, timeout_s=20)
    assert found == {"filtered": len(PORTS)}


def test_without_min_rate_the_window_holds(module_lab, dropping) -> None:  # type: ignore[no-untyped-def]
    """The control: the same scan without ``min_rate`` is held to two probes in flight."""
    with pytest.raises(LabTimeout):
        module_lab.call(silent_scan, str(dropping.v4), "syn", None, timeout_s=4)
