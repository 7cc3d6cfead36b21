"""The self-connect check's view of this namespace's listeners, against real sockets."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from portlib.scanning.connect import selfconnect
from tests.test_connect_engine import HOSTS


@pytest.mark.parametrize("host", HOSTS)
def test_listening_ports_sees_a_listener_and_not_a_bound_socket(host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
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
    # Closed, then bound again without listening: no longer in the table.
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))
        assert port not in (selfconnect.listening_ports() or ())


def test_without_the_tables_there_is_no_telling(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tuple((family, str(tmp_path / "absent")) for family, _ in selfconnect._TCP_TABLES)
    monkeypatch.setattr(selfconnect, "_TCP_TABLES", missing)
    assert selfconnect.listening_ports() is None
