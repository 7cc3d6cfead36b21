"""``-K`` / ``destroy_sockets``: the kernel closes a connection, and the peer sees a reset."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import portlib
from portlib.errors import SocketQueryError
from portlib.model import SocketState
from portlib.socktable import sockdiag
from portlib.socktable.destroy import DestroyUnsupported, destroy_one
from tests.socket_lab import SocketLab, lab_or_skip, python

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def lab() -> Iterator[SocketLab]:
    with lab_or_skip() as built:
        yield built


def test_destroyed_connection_resets_the_peer(lab: SocketLab) -> None:
    port = lab.run({"op": "listen", "host": "127.0.0.1"})["port"]
    conn = lab.run({"op": "connect", "host": "127.0.0.1", "port": port})
    other = lab.run({"op": "connect", "host": "127.0.0.1", "port": port})
    # Destroy only the server's end of the first connection.
    text = f"sport = :{port} and dport = :{conn['port']}"
    closed = portlib.destroy_sockets("tcp", filter=text, netns=lab.ns)
    assert [(s.local.port, s.remote.port, s.state) for s in closed] == [
        (port, conn["port"], SocketState.ESTABLISHED)
    ]
    assert lab.run({"op": "recv", "id": conn["id"]})["error"] == "ECONNRESET"  # the peer
    assert lab.run({"op": "recv", "id": conn["peer_id"]})["error"] == "ECONNABORTED"  # its owner
    left = {(s.local.port, s.remote.port) for s in portlib.sockets("tcp", netns=lab.ns)}
    assert (port, other["port"]) in left and (other["port"], port) in left
    assert portlib.destroy_sockets("tcp", filter=text, netns=lab.ns) == []  # nothing left to hit


def test_cli_kill_prints_what_it_closed(lab: SocketLab) -> None:
    port = lab.run({"op": "listen", "host": "::1"})["port"]
    conn = lab.run({"op": "connect", "host": "::1", "port": port})
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "portlib",
            "sockets",
            "-N",
            lab.ns,
            "-tnK",
            "dport",
            "=",
            f":{port}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    rows = done.stdout.splitlines()
    assert len(rows) == 2 and rows[1].split()[:2] == ["tcp", "ESTAB"]
    assert f"[::1]:{conn['port']}" in rows[1] and f"[::1]:{port}" in rows[1]
    # The client's end was destroyed, so the server's end is the one that sees the reset.
    assert lab.run({"op": "recv", "id": conn["peer_id"]})["error"] == "ECONNRESET"


def test_destroy_needs_a_filter() -> None:
    with pytest.raises(SocketQueryError, match="needs a filter"):
        portlib.destroy_sockets("tcp", filter="state established")
    done = python("-m", "portlib", "sockets", "-K", check=False)
    assert (
        done.returncode == 2 and done.stderr.count("\n") == 1 and "-K needs a filter" in done.stderr
    )


def test_a_kernel_that_cannot_destroy_is_named() -> None:
    # MPTCP's diag handler has no destroy operation: the kernel answers as it does for
    # TCP when built without CONFIG_INET_DIAG_DESTROY.
    with sockdiag.open_socket() as sock, pytest.raises(DestroyUnsupported) as info:
        destroy_one(sock, socket.AF_INET, 262, bytes(sockdiag.SOCKID_SIZE), seq=7)
    assert "CONFIG_INET_DIAG_DESTROY" in str(info.value) and "who PORT --kill" in str(info.value)


NON_ROOT = textwrap.dedent(
    """
    import json, os, socket, sys
    import portlib
    from portlib.errors import PrivilegeError
    portlib.destroy_sockets("tcp", filter="dport = :1")  # load every module while root
    listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port)); server, _ = listener.accept()
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
    try:
        portlib.destroy_sockets("tcp", filter=f"dport = :{port}")
        print(json.dumps("destroyed"))
    except PrivilegeError as exc:
        print(json.dumps(str(exc)))
    """
)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_unprivileged_destroy_is_refused_clearly() -> None:
    out = python("-c", NON_ROOT).stdout
    assert "needs root (CAP_NET_ADMIN)" in json.loads(out)
