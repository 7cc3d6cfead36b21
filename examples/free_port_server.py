"""Pick a free port race-free and serve on it.

Run: python examples/free_port_server.py
find_free_port() answers "which port is free now?", but another program may take
it before you bind it. reserve_port() hands over the socket already bound, so
nothing can come in between: listen on it and give it to the server.
"""

import asyncio

import portlib


async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"hello from portlib's reserved port\n")
    await writer.drain()
    writer.close()


async def main() -> None:
    sock = portlib.reserve_port("tcp", "127.0.0.1")  # bound, no SO_REUSEADDR: it is ours
    port = sock.getsockname()[1]
    server = await asyncio.start_server(greet, sock=sock)  # serves on that very socket
    print(f"serving on 127.0.0.1:{port}")

    # A client, to show it works.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    print("client got:", (await reader.readline()).decode().strip())
    writer.close()
    await writer.wait_closed()

    server.close()
    await server.wait_closed()


asyncio.run(main())
