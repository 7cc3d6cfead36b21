"""ss's filters on a live table: portlib against ``ss`` itself, and the kernel against Python.

Everything runs in a network namespace of the test's own (tests.socket_lab),
holding listeners, connections in several states (ESTAB, CLOSE-WAIT,
FIN-WAIT-2, TIME-WAIT, IPv4-mapped), and UDP sockets, so ``ss``, the kernel's
bytecode and portlib's Python evaluation all look at exactly the same table.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_address, ip_network

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import portlib
from portlib.model import Socket
from portlib.socktable.filters import (
    AddressMatch,
    Comparison,
    Expression,
    Not,
    PortMatch,
    Side,
    SocketFilter,
    predicate,
    ss_states,
)
from tests.socket_lab import SocketLab, lab_or_skip

pytestmark = pytest.mark.lab


@dataclass
class Table:
    lab: SocketLab
    ports: dict[str, int]


@pytest.fixture(scope="module")
def table() -> Iterator[Table]:
    with lab_or_skip("ss") as lab:
        run = lab.run
        ports = {
            "l4": run({"op": "listen", "host": "127.0.0.1"})["port"],
            "l6": run({"op": "listen", "host": "::1"})["port"],
            "dual": run({"op": "listen", "host": "::"})["port"],
            "u4": run({"op": "listen", "proto": "udp", "host": "127.0.0.1"})["port"],
            "u6": run({"op": "listen", "proto": "udp", "host": "::1"})["port"],
        }
        for _ in range(3):
            run({"op": "connect", "host": "127.0.0.1", "port": ports["l4"], "send": 100})
        run({"op": "connect", "host": "::1", "port": ports["l6"]})
        ports["mapped"] = run({"op": "connect", "host": "127.0.0.1", "port": ports["dual"]})["port"]
        half = run({"op": "connect", "host": "127.0.0.1", "port": ports["l4"]})
        run({"op": "close", "id": half["id"]})  # the client: FIN-WAIT-2; its peer: CLOSE-WAIT
        done = run({"op": "connect", "host": "::1", "port": ports["l6"]})
        run({"op": "close", "id": done["id"]})
        run({"op": "close", "id": done["peer_id"]})  # the client ends in TIME-WAIT
        ports["udp_client"] = run(
            {"op": "connect", "proto": "udp", "host": "127.0.0.1", "port": ports["u4"]}
        )["port"]
        _settle(lab)
        yield Table(lab, ports)


def _settle(lab: SocketLab) -> None:
    """Wait until the closing connections reach the states they stay in for a minute."""
    deadline = time.monotonic() + 5
    while any(word in lab.exec(["ss", "-tan"]) for word in ("FIN-WAIT-1", "LAST-ACK")):
        assert time.monotonic() < deadline, "connections did not settle"
        time.sleep(0.02)


def _end(host: str, port: str) -> tuple[str, str]:
    host = host.strip("[]")
    host = "*" if host in ("*", "0.0.0.0", "::") else str(ip_address(host))
    return host, "*" if port in ("*", "0") else port


def ss_rows(table: Table, flags: str, text: str) -> set[tuple[str, ...]]:
    out = table.lab.exec(["ss", flags, *text.split()])
    lines = out.splitlines()
    # With a single state asked for, ss leaves the State column out.
    states = portlib.parse_socket_filter(text).states if text else None
    implied = next(iter(states)).value if states and len(states) == 1 else None
    rows = set()
    for line in lines[1:]:
        cols = line.split()
        if not lines[0].startswith("State"):
            assert implied is not None, lines[0]
            cols = [implied, *cols]
        (lhost, lport), (rhost, rport) = (c.rsplit(":", 1) for c in cols[3:5])
        rows.add((cols[0], *_end(lhost, lport), *_end(rhost, rport)))
    return rows


def portlib_rows(found: list[Socket]) -> set[tuple[str, ...]]:
    return {
        (s.state.value, *_end(str(s.local.address), str(s.local.port)),
         *_end(str(s.remote.address), str(s.remote.port)))
        for s in found
    }  # fmt: skip


FILTERS = [
    "",
    "state established",
    "state listening",
    "state connected",
    "state synchronized",
    "state bucket",
    "state big",
    "exclude listening",
    "state time-wait state close-wait",
    "dport = :{l4}",
    "sport = :{l4} or dport = :{l4}",
    "( dport = :{l4} or dport = :{l6} )",
    "dport != :{l4}",
    "dport > :{l4}",
    "dport < :{l4}",
    "dport >= :{l4}",
    "dport <= :{l4}",
    "sport gt :1024 and sport lt :{l6}",
    "dst 127.0.0.1",
    "dst [::1]",
    "src 127.0.0.0/8",
    "src [::ffff:127.0.0.1]",
    "src *:{l4}",
    "src 127.0.0.1:{l4}",
    "dst [::1]:{l6}",
    "not dst 127.0.0.1",
    "! ( sport = :{l4} or sport = :{l6} )",
    "state established dport = :{l4}",
    "state established ( dport = :{dual} or sport = :{dual} )",
    # and/or group from the left in ss: (a or b) and c
    "sport = :{l4} or sport = :{l6} and dport = :0",
    "sport = :{l4} and dport = :0 or sport = :{l6}",
]


@pytest.mark.parametrize("template", FILTERS)
def test_tcp_filters_agree_with_ss(table: Table, template: str) -> None:
    text = template.format(**table.ports)
    found = portlib.sockets("tcp", filter=text, netns=table.lab.ns, processes=False)
    assert portlib_rows(found) == ss_rows(table, "-tan", text)


@pytest.mark.parametrize(
    "template",
    ["", "state established", "state unconnected", "dport = :{u4}", "sport = :{u6}",
     "dst 127.0.0.1", "not sport = :{u4}"],
)  # fmt: skip
def test_udp_filters_agree_with_ss(table: Table, template: str) -> None:
    text = template.format(**table.ports)
    found = portlib.sockets("udp", filter=text, netns=table.lab.ns, processes=False)
    assert portlib_rows(found) == ss_rows(table, "-uan", text)


def test_the_table_has_the_states_it_should(table: Table) -> None:
    states = {s.state.value for s in portlib.sockets("tcp", netns=table.lab.ns)}
    assert {"LISTEN", "ESTAB", "CLOSE-WAIT", "FIN-WAIT-2", "TIME-WAIT"} <= states


# -- the kernel's evaluation against Python's, on random filters --------------------------------


def _live_leaves(table: Table) -> st.SearchStrategy[Expression]:
    ports = st.sampled_from([0, 1024, *table.ports.values()])
    networks = st.sampled_from(
        [ip_network(n) for n in ("127.0.0.1/32", "127.0.0.0/8", "0.0.0.0/0", "10.0.0.0/8",
                                 "::1/128", "::/0", "::ffff:127.0.0.1/128", "::ffff:0:0/96")]
    )  # fmt: skip
    sides = st.sampled_from(list(Side))
    return st.one_of(
        st.builds(PortMatch, sides, st.sampled_from(list(Comparison)), ports),
        st.builds(AddressMatch, sides, st.none() | networks, st.none() | ports),
    )


def _expressions(table: Table) -> st.SearchStrategy[Expression]:
    def combine(children: st.SearchStrategy[Expression]) -> st.SearchStrategy[Expression]:
        pairs = st.tuples(children, children)
        return st.one_of(
            children.map(Not),
            pairs.map(lambda ab: ab[0] & ab[1]),
            pairs.map(lambda ab: ab[0] | ab[1]),
        )

    return st.recursive(_live_leaves(table), combine, max_leaves=6)


NAMES = ["established", "listening", "time-wait", "close-wait", "fin-wait-2", "unconnected"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_kernel_and_python_agree_on_random_filters(table: Table, data: st.DataObject) -> None:
    expression = data.draw(_expressions(table))
    names = data.draw(st.none() | st.lists(st.sampled_from(NAMES), min_size=1, max_size=3))
    socket_filter = SocketFilter(expression, None if names is None else ss_states(*names))
    ns = table.lab.ns
    by_kernel = portlib.sockets("inet", filter=socket_filter, netns=ns, processes=False)
    everything = portlib.sockets("inet", netns=ns, processes=False)
    keep = predicate(socket_filter)
    assert set(by_kernel) == {s for s in everything if keep(s)}, str(socket_filter)
