"""``-e -o -i -m``, ``-s``, ``-H`` and ``-N``, checked against ``ss`` on the same table.

A namespace of the test's own holds idle connections (one with keepalive, one
that moved data), so the values ss and portlib read a moment apart are the
same; the few that tick (times since the last packet, timer countdowns) are
compared with a tolerance or left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import portlib
from portlib.socktable.details import TimerKind
from tests.socket_lab import SocketLab, lab_or_skip, python

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parent.parent
# Values that change between two looks at an idle socket.
TICKING = {"lastsnd", "lastrcv", "lastack", "timer", "send", "pacing_rate", "bbr"}


@dataclass
class Conns:
    lab: SocketLab
    listener: int
    keepalive: int
    busy: int


@pytest.fixture(scope="module")
def conns() -> Iterator[Conns]:
    with lab_or_skip("ss") as lab:
        listener = lab.run({"op": "listen", "host": "127.0.0.1"})["port"]
        v6 = lab.run({"op": "listen", "host": "::1"})["port"]
        keepalive = lab.run(
            {"op": "connect", "host": "127.0.0.1", "port": listener, "keepalive": True}
        )["port"]
        busy = lab.run({"op": "connect", "host": "127.0.0.1", "port": listener, "send": 50000})
        lab.run({"op": "connect", "host": "::1", "port": v6, "send": 10})
        lab.run({"op": "listen", "proto": "udp", "host": "127.0.0.1"})
        yield Conns(lab, listener, keepalive, busy["port"])


def words(text: str) -> dict[tuple[str, str], dict[str, str]]:
    """(local, peer) -> ss's key:value words for that socket (its row and its -i line)."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        tokens = line.split()
        if not line.startswith("\t"):
            current = found.setdefault((tokens[3], tokens[4]), {})
            tokens = tokens[5:]
        joined: list[str] = []
        for token in tokens:  # "pacing_rate 123bps" and friends are two words
            if joined and joined[-1] in ("pacing_rate", "delivery_rate", "send"):
                joined[-1] += ":" + token
            else:
                joined.append(token)
        for token in joined:
            key, _, value = token.partition(":")
            current[key] = value
    return found


def portlib_text(conns: Conns, *flags: str) -> str:
    return python("-m", "portlib", "sockets", "-N", conns.lab.ns, *flags).stdout


def test_extras_agree_with_ss(conns: Conns) -> None:
    ours = words(portlib_text(conns, "-tanieom"))
    theirs = words(conns.lab.exec(["ss", "-tanieom"]))
    assert ours.keys() == theirs.keys() and len(ours) == 8
    for key, mine in ours.items():
        other = theirs[key]
        shared = (mine.keys() & other.keys()) - TICKING
        assert {"ino", "sk", "skmem"} <= shared, key
        assert {k: mine[k] for k in shared} == {k: other[k] for k in shared}, key
        # What ss prints that we do not: its cgroup path and derived rates (see the README).
        assert other.keys() - mine.keys() <= {"cgroup", "send", "bbr", "busy"}, key
        assert mine.keys() - other.keys() <= TICKING, key
    established = [w for (local, _), w in ours.items() if "bytes_acked" in w]
    assert established and all({"rtt", "cwnd", "mss", "rto", "bbr"} & w.keys() for w in established)
    busy = next(w for (local, _), w in ours.items() if local.endswith(f":{conns.busy}"))
    assert busy["bytes_acked"] == "50001"  # 50000 bytes, plus one for the SYN


def test_timers_and_typed_values(conns: Conns) -> None:
    found = portlib.sockets(
        "tcp", netns=conns.lab.ns, extended=True, timers=True, tcp_info=True, memory=True
    )
    keepalive = next(s for s in found if s.local.port == conns.keepalive)
    assert keepalive.details is not None and keepalive.details.timer is not None
    assert keepalive.details.timer.kind is TimerKind.KEEPALIVE
    assert 7_000_000 < keepalive.details.timer.expires_ms <= 7_200_000  # the 2 h default idle
    ss_line = conns.lab.exec(["ss", "-tno", f"sport = :{conns.keepalive}"]).splitlines()[1]
    assert "timer:(keepalive," in ss_line
    busy = next(s for s in found if s.local.port == conns.busy)
    assert busy.details is not None and busy.details.tcp is not None
    tcp = busy.details.tcp
    assert tcp.bytes_acked == 50001 and tcp.bytes_sent == 50000 and tcp.congestion
    assert tcp.rtt_us > 0 and tcp.snd_cwnd >= 10 and tcp.delivery_rate is not None
    assert busy.details.memory is not None and busy.details.memory.rcvbuf > 0
    assert busy.details.cookie and busy.details.shutdown == 0
    assert all(s.owners and s.owners[0].pid == conns.lab.pid for s in found if s.inode)
    plain = portlib.sockets("tcp", netns=conns.lab.ns)
    assert all(s.details is None for s in plain)  # opt-in: the default decodes nothing more
    as_json = portlib_text(conns, "-tnio", "--json")
    assert '"rtt_us"' in as_json and '"kind": "keepalive"' in as_json


def test_udp_memory_and_no_tcp_info(conns: Conns) -> None:
    udp = portlib.sockets("udp", netns=conns.lab.ns, memory=True, tcp_info=True)
    assert udp and all(
        s.details is not None and s.details.memory is not None and s.details.tcp is None
        for s in udp
    )


def test_summary_agrees_with_ss(conns: Conns) -> None:
    ours = portlib_text(conns, "-s").splitlines()
    theirs = [line.rstrip() for line in conns.lab.exec(["ss", "-s"]).splitlines()]
    # "Total:" and the TCP line's total, closed and orphaned figures count sockets of the
    # whole machine, which other tests change meanwhile; estab and timewait are this
    # namespace's, and so is the table.
    assert ours[0].startswith("Total: ") and theirs[0].startswith("Total: ")
    per_namespace = re.compile(r"estab \d+|timewait \d+")
    assert per_namespace.findall(ours[1]) == per_namespace.findall(theirs[1])
    assert ours[2:] == theirs[2:]
    summary = portlib.socket_summary(netns_name=conns.lab.ns)
    assert summary.tcp_sockets.ipv4 >= 5 and summary.udp_sockets.ipv4 == 1
    assert summary.tcp_established == 6  # three connections, both ends


def test_no_header_and_netns(conns: Conns) -> None:
    with_header = portlib_text(conns, "-tln").splitlines()
    without = portlib_text(conns, "-tlnH").splitlines()
    assert with_header[0].startswith("State") and without == with_header[1:]
    assert any(f"127.0.0.1:{conns.listener}" in line for line in without)
    # The machine's own listeners are not in the namespace.
    here = {s.local.port for s in portlib.listening("tcp", netns=conns.lab.ns)}
    assert conns.listener in here and 2024 not in here


def test_bad_namespace_is_one_line(conns: Conns) -> None:
    done = python("-m", "portlib", "sockets", "-N", "portlib-nosuch-ns", "-t", check=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "no network namespace" in done.stderr
