"""``portlib scan``'s outputs written host by host, on loopback (ports 1-40 only):
``--append-output`` still appends to streamed -oN/-oG files, -R names every host in
order as it finishes, ``-vv`` counts folded verdicts, ``--open`` and ``--all-ports``
work per host, and ``--json`` is one loadable document."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from portlib.cli.reversedns import ReverseNames
from portlib.model import HostResult, HostState, PortState, Reason
from portlib.output import load, parse
from tests.test_cli_outputs import listener, portlib_cli

__all__ = ["listener"]  # the fixture, shared with test_cli_outputs

PORTS = "1-40"  # loopback ports the machine leaves alone


@pytest.mark.live
def test_append_output_appends_to_streamed_files(tmp_path: Path) -> None:
    base = tmp_path / "scan"
    for _ in range(2):
        done = portlib_cli("scan", "-Pn", "-p", PORTS, "127.0.0.1", "-oA", str(base),
                           "--append-output")  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert Path(f"{base}.gnmap").read_text().count("# portlib done at") == 2
    assert Path(f"{base}.nmap").read_text().count("portlib done:") == 2
    xml = Path(f"{base}.xml").read_text()
    assert xml.count("<nmaprun ") == 1  # XML is replaced: two reports would not be XML
    assert load(f"{base}.xml").hosts[0].state_counts() == {PortState.CLOSED: 40}


@pytest.mark.live
def test_json_folds_and_all_ports_lists_and_open_filters(listener: int) -> None:
    spec = f"{PORTS},{listener}"
    done = portlib_cli("scan", "-Pn", "-p", spec, "--json", "127.0.0.1", "::1")
    assert done.returncode == 0, done.stderr
    report = parse(done.stdout)
    first, second = report.hosts
    assert [p.port for p in first.ports] == [listener]
    assert [(f.state, f.count) for f in first.extra_ports] == [(PortState.CLOSED, 40)]
    assert second.state_counts() == {PortState.CLOSED: 41}  # nothing listens on ::1
    every = parse(portlib_cli("scan", "-Pn", "-p", spec, "--json", "--all-ports",
                              "127.0.0.1").stdout)  # fmt: skip
    assert len(every.hosts[0].ports) == 41 and every.hosts[0].extra_ports == ()
    opened = portlib_cli("scan", "-Pn", "-p", spec, "--open", "--json", "127.0.0.1", "::1")
    hosts = json.loads(opened.stdout)["hosts"]
    assert [(h["address"], [p["port"] for p in h["ports"]]) for h in hosts] == [
        ("127.0.0.1", [listener])
    ]
    table = portlib_cli("scan", "-Pn", "-p", spec, "--open", "127.0.0.1", "::1").stdout
    assert "portlib scan report for 127.0.0.1" in table and "for ::1" not in table
    assert "portlib done: 2 IP addresses (2 hosts up)" in table


@pytest.mark.live
def test_verbose_totals_count_folded_verdicts(listener: int) -> None:
    done = portlib_cli("scan", "-vv", "-Pn", "-p", f"{PORTS},{listener}", "127.0.0.1", "::1")
    assert done.returncode == 0, done.stderr
    assert "Completed Connect Scan of 2 hosts in" in done.stdout
    assert "82 verdicts, 1 open" in done.stdout


@pytest.mark.live
def test_reverse_dns_names_hosts_as_they_stream(tmp_path: Path) -> None:
    # 127.0.0.1 is in /etc/hosts, so the lookup never leaves the machine.
    done = portlib_cli("scan", "-R", "-Pn", "-p", PORTS, "127.0.0.1", "-oG", "-")
    assert done.returncode == 0, done.stderr
    assert "Host: 127.0.0.1 (localhost)\tStatus: Up" in done.stdout


def test_reverse_names_keep_the_order_hosts_came_in() -> None:
    def host(address: str, name: str | None) -> HostResult:
        return HostResult(ipaddress.ip_address(address), name, HostState.UP, Reason.USER_SET)

    names = ReverseNames()
    given = [host("192.0.2.1", "first"), host("127.0.0.1", None), host("192.0.2.3", "third")]
    ready = [h for one in given for h in names.submit(one)]
    ready += names.finish()
    assert [(str(h.address), h.hostname) for h in ready] == [
        ("192.0.2.1", "first"),
        ("127.0.0.1", "localhost"),
        ("192.0.2.3", "third"),
    ]
