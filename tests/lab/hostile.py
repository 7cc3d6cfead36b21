"""Hostile TCP servers for the detection tests, run inside a target namespace.

``--noise PORT``: sends 10 MB of random bytes to whoever connects. ``--tls
PORT:CERT:KEY``: completes a TLS handshake, then stays silent. ``--record PORT:FILE``:
says nothing and appends to FILE how many bytes each connection sent it (a printer
port must get none). Standard library only; READY on stdout once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import ssl
import sys

from tests.lab.procs import announce_ready, parent_gone

NOISE_BYTES = 10 * 1024 * 1024


async def _noise(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    chunk = os.urandom(64 * 1024)
    with contextlib.suppress(OSError):
        for _ in range(NOISE_BYTES // len(chunk)):
            writer.write(chunk)
            await writer.drain()
    writer.close()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ssl.SSLError):
        while await reader.read(65536):
            pass
    writer.close()


def _recorder(path: str):  # type: ignore[no-untyped-def]
    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = 0
        with contextlib.suppress(OSError):
            while chunk := await reader.read(65536):
                received += len(chunk)
        with open(path, "a") as log:
            log.write(f"{received}\n")
        writer.close()

    return record


async def serve(args: argparse.Namespace) -> None:
    servers = []
    for port in args.noise:
        servers.append(await asyncio.start_server(_noise, None, port))
    for spec in args.tls:
        port, cert, key = spec.split(":")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        servers.append(await asyncio.start_server(_silent, None, int(port), ssl=context))
    for spec in args.record:
        port, path = spec.split(":", 1)
        servers.append(await asyncio.start_server(_recorder(path), None, int(port)))
    announce_ready()
    while not parent_gone(args.parent):
        await asyncio.sleep(0.5)
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.hostile")
    parser.add_argument("--noise", type=int, action="append", default=[])
    parser.add_argument("--tls", action="append", default=[], help="PORT:CERT:KEY")
    parser.add_argument("--record", action="append", default=[], help="PORT:FILE")
    parser.add_argument("--parent", type=int, default=0, help="exit when this pid is gone")
    asyncio.run(serve(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
