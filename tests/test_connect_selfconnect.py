"""The self-connect check's view of this namespace's listeners, against real sockets."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from portlib.scanning.connect import selfconnect


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize(
    "family, host",
    [
        (socket.AF_INET, "127.0.0.1"),
        pytest.param(
            socket.AF_INET6,
            "::1",
            marks=pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here"),
        ),
    ],
)
def test_listening_ports_sees_a_listener_and_not_a_bound_socket(
    family: socket.AddressFamily, host: str
) -> None:
    with socket.socket(family) as listener, socket.socket(family) as bound:
        listener.bind((host, 0))
        listener.listen()
        bound.bind((host, 0))  # held, never listening: what a closed port looks like
        listening = selfconnect.listening_ports()
        assert listening is not None
        assert listener.getsockname()[1] in listening
        assert bound.getsockname()[1] not in listening


def test_a_listener_that_stops_listening_leaves_the_table() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        held.listen()
        assert port in (selfconnect.listening_ports() or ())
    # The port stays ours to name: rebind it, bound only.
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))
        assert port not in (selfconnect.listening_ports() or ())


def test_without_the_tables_there_is_no_telling(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tuple((family, str(tmp_path / "absent")) for family, _ in selfconnect._TCP_TABLES)
    monkeypatch.setattr(selfconnect, "_TCP_TABLES", missing)
    assert selfconnect.listening_ports() is None
