"""``interface`` (nmap's ``-e``): probes leave by that interface only (needs root).

The lab's scanner reaches its hosts over ``br0``. Told to use ``br0``, every method
finds what it finds without being told. Told to use ``side0`` (a veth whose other end
leads nowhere), the probes go out there, as the kernel routes a bound socket through
its device whatever the routing table says: nothing answers, the host seems down and
its ports are filtered.
"""

from __future__ import annotations

import pytest

from portlib.errors import ScanError

pytestmark = pytest.mark.lab

PORTS = "22,81"  # open, and closed


def states(
    host: str, method: str, interface: str | None, discovery: bool = True
) -> tuple[str, dict[int, tuple[str, str]]]:
    """Run in the scanner namespace: the host's state, and each port's (state, reason)."""
    import portlib

    report = portlib.scan(
        host, PORTS, method=method, interface=interface, discovery=discovery, timing=4, retries=1
    )
    (found,) = report.hosts
    return found.state.value, {p.port: (p.state.value, p.reason.value) for p in found.all_ports()}


@pytest.fixture(scope="module")
def target(module_lab):  # type: ignore[no-untyped-def]
    host = module_lab.add_host("viaiface")
    host.serve_tcp([22])
    # An interface of the scanner's with no route to the hosts (no dummy driver here).
    module_lab.exec(["ip", "link", "add", "side0", "type", "veth", "peer", "name", "side1"])
    module_lab.exec(["ip", "link", "set", "side0", "up"])
    module_lab.exec(["ip", "link", "set", "side1", "up"])
    return host


@pytest.mark.parametrize("method", ["connect", "syn"])
def test_the_routed_interface_changes_nothing(module_lab, target, method: str) -> None:  # type: ignore[no-untyped-def]
    plain = module_lab.call(states, str(target.v4), method, None)
    assert plain[0] == "up" and plain[1][22][0] == "open" and plain[1][81][0] == "closed"
    assert module_lab.call(states, str(target.v4), method, "br0") == plain


@pytest.mark.parametrize("method", ["connect", "syn"])
def test_probes_leave_by_the_interface_they_are_told(module_lab, target, method: str) -> None:  # type: ignore[no-untyped-def]
    assert module_lab.call(states, str(target.v4), method, "side0") == ("down", {})
    _, ports = module_lab.call(states, str(target.v4), method, "side0", False, timeout_s=60)
    assert {port: state for port, (state, _) in ports.items()} == {22: "filtered", 81: "filtered"}


def test_an_unknown_interface_is_refused_before_anything_is_sent() -> None:
    from portlib.scanning import Scanner

    with pytest.raises(ScanError, match="no network interface named 'nosuch0'"):
        Scanner("192.0.2.10", "22", interface="nosuch0")
