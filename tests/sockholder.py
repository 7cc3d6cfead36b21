"""Holds sockets on command for the socket-table tests: ``python -m tests.sockholder``.

It reads one JSON command a line on stdin and answers one JSON line on stdout:

- ``{"op": "listen", "proto": "tcp"|"udp", "host": "127.0.0.1", "port": 0}`` ->
  ``{"id", "port"}`` (a TCP listener, or a bound UDP socket; ``"::"`` listens dual-stack);
- ``{"op": "connect", "proto", "host", "port", "keepalive": false, "send": 0}`` ->
  ``{"id", "port", "peer_id"}``: a TCP connection to one of our listeners (``peer_id``
  is the accepted end; ``send`` bytes go from the client to it) or a connected UDP socket;
- ``{"op": "close", "id"}`` -> ``{}``; ``{"op": "recv", "id"}`` -> ``{"error": errno name
  or null}`` (one blocking read, 5 s at most); ``{"op": "pid"}`` -> ``{"pid"}``.

It exits when stdin closes. Only loopback addresses are ever used.
"""

from __future__ import annotations

import errno
import json
import socket
import sys

FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}


class Holder:
    def __init__(self) -> None:
        self.sockets: dict[int, socket.socket] = {}
        self.next_id = 1

    def keep(self, sock: socket.socket) -> int:
        key = self.next_id
        self.next_id += 1
        self.sockets[key] = sock
        return key

    def listen(self, proto: str, host: str, port: int = 0) -> dict[str, object]:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(family, kind)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host == "::" else 1)
        sock.bind((host, port))
        if proto == "tcp":
            sock.listen(16)
        return {"id": self.keep(sock), "port": sock.getsockname()[1]}

    def connect(self, command: dict[str, object]) -> dict[str, object]:
        host, port = str(command["host"]), int(command["port"])  # type: ignore[call-overload]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if command.get("proto", "tcp") == "udp":
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.connect((host, port))
            return {"id": self.keep(sock), "port": sock.getsockname()[1], "peer_id": None}
        listener = next(
            s
            for s in self.sockets.values()
            if s.type == socket.SOCK_STREAM and s.getsockname()[1] == port and _listening(s)
        )
        client = socket.socket(family, socket.SOCK_STREAM)
        if command.get("keepalive"):
            client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        client.connect((host, port))
        server, _ = listener.accept()
        size = int(command.get("send", 0))  # type: ignore[call-overload]
        if size:
            client.sendall(b"x" * size)
            got = 0
            while got < size:
                got += len(server.recv(size - got))
        return {
            "id": self.keep(client),
            "port": client.getsockname()[1],
            "peer_id": self.keep(server),
        }

    def recv(self, key: int) -> dict[str, object]:
        sock = self.sockets[key]
        sock.settimeout(5)
        try:
            data = sock.recv(1)
        except OSError as exc:
            return {"error": errno.errorcode.get(exc.errno or 0, str(exc))}
        return {"error": None if data else "EOF"}

    def run(self, command: dict[str, object]) -> dict[str, object]:
        op = command["op"]
        if op == "listen":
            port = int(command.get("port", 0))  # type: ignore[call-overload]
            return self.listen(str(command.get("proto", "tcp")), str(command["host"]), port)
        if op == "connect":
            return self.connect(command)
        if op == "close":
            self.sockets.pop(int(command["id"])).close()  # type: ignore[call-overload]
            return {}
        if op == "recv":
            return self.recv(int(command["id"]))  # type: ignore[call-overload]
        if op == "pid":
            import os

            return {"pid": os.getpid()}
        raise ValueError(f"unknown op {op!r}")


def _listening(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


def main() -> int:
    holder = Holder()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        print(json.dumps(holder.run(json.loads(line))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
