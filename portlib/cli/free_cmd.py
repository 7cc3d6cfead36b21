"""``portlib free`` (is a port free, give me free ports) and ``portlib service`` (the registry)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import TYPE_CHECKING, Any

from portlib.cli.argtypes import positive_duration, whole_number

if TYPE_CHECKING:
    import socket

    from portlib.model import IPAddress, Protocol, Service

FREE_EPILOG = """\
examples:
  portlib free                       a free TCP port (the kernel's pick), on all interfaces
  portlib free --count 3 -u          three different free UDP ports
  portlib free --range 8000-8999     a free port from that range (reserved ports skipped)
  portlib free --check 8000          exit 0 if 8000/tcp is free, 1 if something holds it
  portlib free --check 5353/udp      the same for a UDP port (as 'portlib who' takes it)
  portlib free --check 53 -u --host 127.0.0.1 --json

Ports are tested by binding them as a server would (TCP with SO_REUSEADDR), on
every IPv4 and IPv6 address unless --host names one. The ports printed for
--count are held together while being picked, so they are all different.
"""

SERVICE_EPILOG = """\
examples:
  portlib service ssh            the ports registered for ssh (TCP and UDP)
  portlib service 5432           the names registered for port 5432
  portlib service 53 -u          only UDP
  portlib service www --json     aliases work too; JSON with field names
  portlib service 192.0.2.10:22  detect what runs on that port (as nmap -sV)
  portlib service [::1]:53/udp   the same over UDP

Names come from IANA's registry (/etc/services), the open frequency from nmap:
the fraction of scanned hosts the port was found open on.
"""


def register(subparsers: Any) -> None:
    free = subparsers.add_parser(
        "free",
        help="check whether a port is free, or print free ports",
        description="Check whether a port can be bound now, or print free ports.",
        epilog=FREE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    free.add_argument(
        "--check",
        metavar="PORT[/PROTO]",
        help="test this port, e.g. 8000 or 53/udp (exit 0 free, 1 in use)",
    )
    free.add_argument(
        "--count", metavar="N", type=whole_number, default=1, help="how many ports (default 1)"
    )
    free.add_argument(
        "--range", metavar="A-B", dest="port_range", help="search this range (inclusive)"
    )
    _protocol_flags(free)
    free.add_argument(
        "--host",
        metavar="H",
        help="an IP address of this machine (default: all interfaces, IPv4 and IPv6)",
    )
    free.add_argument("--json", action="store_true", help="print JSON")
    free.set_defaults(handler=run_free)

    service = subparsers.add_parser(
        "service",
        help="the ports of a service name, the names of a port, or what runs on HOST:PORT",
        description="Look up the service registry: NAME -> ports, PORT[/PROTO] -> names; "
        "detect the service on HOST:PORT[/PROTO].",
        epilog=SERVICE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    service.add_argument(
        "query", metavar="NAME|PORT|HOST:PORT", help="a service name or alias, a port, or HOST:PORT"
    )
    _protocol_flags(service, default=None)
    service.add_argument("--version-intensity", metavar="0-9", type=whole_number, default=7,
                         help="for HOST:PORT: how many probes to try (default 7)")  # fmt: skip
    service.add_argument("--host-timeout", metavar="TIME", type=positive_duration, default=None,
                         help="for HOST:PORT: give up after TIME (5s, 500ms)")  # fmt: skip
    service.add_argument("--json", action="store_true", help="print JSON")
    service.set_defaults(handler=run_service)


def _protocol_flags(parser: argparse.ArgumentParser, default: str | None = "tcp") -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-t", "--tcp", dest="protocol", action="store_const", const="tcp")
    group.add_argument("-u", "--udp", dest="protocol", action="store_const", const="udp")
    group.add_argument("--protocol", dest="protocol", metavar="P", help="tcp or udp")
    # None until a flag gives one, so --check 53/udp can tell a given -t from the default
    parser.set_defaults(protocol=None, protocol_default=default)


def _port_to_check(text: str, flag_protocol: Protocol, flag_given: bool) -> tuple[int, Protocol]:
    """``8000`` or ``53/udp``, as ``portlib who`` takes ports; a protocol after ``/``
    that contradicts -t/-u/--protocol is an error."""
    from portlib.errors import PortSpecError
    from portlib.services import as_protocol, small_number

    number_text, slash, protocol_text = text.strip().partition("/")
    number = small_number(number_text.strip())
    if number is None:
        raise PortSpecError(f"bad port {text!r}: not a whole number (give PORT or PORT/udp)")
    protocol = as_protocol(protocol_text) if slash else flag_protocol
    if slash and flag_given and protocol is not flag_protocol:
        raise PortSpecError(f"--check {text} says {protocol} but the flags say {flag_protocol}")
    return number, protocol


def _holders(port: int, protocol: Protocol) -> str:
    """Where sockets of this machine hold the port: ``[::1]``, ``127.0.0.1 and [::]``."""
    from portlib.model import Socket, SocketState
    from portlib.socktable import sockets

    found = {
        s.local.address
        for s in sockets(protocol.value, port=port, processes=False)
        if isinstance(s, Socket) and s.local.port == port and s.state is not SocketState.TIME_WAIT
    }
    shown = [f"[{a}]" if a.version == 6 else str(a) for a in sorted(found, key=_address_order)]
    return " and ".join(shown)


def _address_order(address: IPAddress) -> tuple[int, int]:
    return address.version, int(address)


def run_free(args: argparse.Namespace) -> int:
    from portlib.errors import PortSpecError
    from portlib.output.jsonout import dumps
    from portlib.ports import is_port_free, reserve_port
    from portlib.services import as_protocol

    args.protocol_given = args.protocol is not None
    if args.protocol is None:
        args.protocol = args.protocol_default

    protocol = as_protocol(args.protocol)
    where = "all interfaces" if args.host is None else args.host
    if args.check is not None:
        if args.port_range is not None or args.count != 1:
            raise PortSpecError("--check tests one port; --count and --range are for finding ports")
        port, protocol = _port_to_check(args.check, protocol, args.protocol_given)
        free = is_port_free(port, protocol, args.host)
        if args.json:
            print(dumps({"port": port, "protocol": protocol, "host": args.host, "free": free}))
        elif free:
            print(f"{port}/{protocol} is free on {where}")
        else:
            held = args.host if args.host is not None else _holders(port, protocol)
            print(f"{port}/{protocol} is in use" + (f" on {held}" if held else ""))
        return 0 if free else 1
    if args.count < 1:
        raise PortSpecError(f"--count must be 1 or more, not {args.count}")
    with contextlib.ExitStack() as held:
        # Hold every pick until all are chosen, so the same port cannot come back twice.
        socks: list[socket.socket] = []
        for _ in range(args.count):
            sock = reserve_port(protocol, args.host, port_range=args.port_range)
            held.enter_context(sock)
            socks.append(sock)
        ports = [int(s.getsockname()[1]) for s in socks]
    if args.json:
        print(dumps({"protocol": protocol, "host": args.host, "ports": ports}))
    else:
        print("\n".join(map(str, ports)))
    return 0


def run_service(args: argparse.Namespace) -> int:
    from portlib.cli.service_detect import endpoint_query, run_detect

    if (endpoint := endpoint_query(args.query)) is not None:
        return run_detect(args, endpoint)
    if args.protocol is None:
        args.protocol = args.protocol_default
    from portlib.errors import UnknownService
    from portlib.model import Protocol
    from portlib.output.jsonout import dumps
    from portlib.services import (
        as_protocol,
        check_port,
        service_for_port,
        service_ports,
        small_number,
    )

    wanted = None if args.protocol is None else as_protocol(args.protocol)
    query: str = args.query.strip()
    port_text, slash, proto_text = query.partition("/")
    number = small_number(port_text)
    if number is not None:
        if slash:
            wanted = as_protocol(proto_text)
        port = check_port(number)
        protocols = (wanted,) if wanted else (Protocol.TCP, Protocol.UDP)
        found = [s for p in protocols if (s := service_for_port(port, p)) is not None]
        if not found:
            on = "/".join(protocols)
            raise UnknownService(f"no service is registered for port {port} ({on})")
    else:
        found = [s for s in service_ports(query) if wanted is None or s.protocol is wanted]
        if not found:
            raise UnknownService(f"no {wanted} service named {query!r}")
    if args.json:
        print(dumps(found))
    else:
        sys.stdout.write(_table(found))
    return 0


def _table(services: list[Service]) -> str:
    rows = [("PORT", "SERVICE", "OPEN-FREQ", "ALIASES")]
    for s in services:
        frequency = "-" if s.frequency is None else f"{s.frequency:.6f}"
        rows.append((f"{s.port}/{s.protocol}", s.name, frequency, " ".join(s.aliases)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "".join(
        f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip() + "\n"
        for r in rows
    )
