"""``portlib sockets`` (what ``ss`` shows) and ``portlib who`` (``lsof -i :PORT``, ``fuser -k``).

The letters of ``portlib sockets`` mean what they mean in ``ss``: ``-tanp``,
``-tul``, ``-x``. Formatting is pure (rows in, text out); the handlers read the
tables and print.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ipaddress import IPv4Address, IPv6Address

    from portlib.model import Endpoint, Process, Socket, UnixSocket

SOCKETS_EPILOG = """\
examples:
  portlib sockets -tanp      every TCP socket, numeric, with processes (ss -tanp)
  portlib sockets -tulpn     listening TCP and UDP sockets with processes
  portlib sockets -x         connected unix sockets
  portlib sockets -t4 --json established IPv4 TCP sockets as JSON

Without -l or -a only connected sockets are shown, and without -t/-u/-w/-x
every kind is, as in ss. Without -n ports are shown by service name.
"""

WHO_EPILOG = """\
examples:
  portlib who 8000             which processes hold local TCP port 8000 (lsof -i :8000)
  portlib who 53/udp --json    the sockets on UDP port 53, with their owners, as JSON
  portlib who 8000 --kill      send SIGTERM to them (fuser -k 8000/tcp)
  portlib who 8000 --kill --signal KILL

Exit status: 0 when some process holds the port, 1 when none does, 2 on bad input.
"""

# ss's Netid column for unix socket types.
UNIX_NETIDS = {"stream": "u_str", "dgram": "u_dgr", "seqpacket": "u_seq"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "sockets",
        help="list this machine's sockets and their processes (like ss)",
        description="List sockets from the kernel's tables, with ss's options.",
        epilog=SOCKETS_EPILOG,
        formatter_class=raw,
    )
    p.add_argument("-t", "--tcp", action="store_true", help="TCP sockets")
    p.add_argument("-u", "--udp", action="store_true", help="UDP sockets")
    p.add_argument("-w", "--raw", action="store_true", help="raw sockets")
    p.add_argument("-x", "--unix", action="store_true", help="unix domain sockets")
    p.add_argument(
        "-l", "--listening", action="store_true", help="only listening (and unconnected) sockets"
    )
    p.add_argument("-a", "--all", action="store_true", help="sockets in every state")
    p.add_argument("-n", "--numeric", action="store_true", help="port numbers, not service names")
    p.add_argument(
        "-p", "--processes", action="store_true", help="show the processes holding each socket"
    )
    p.add_argument("-4", "--ipv4", action="store_true", help="only IPv4")
    p.add_argument("-6", "--ipv6", action="store_true", help="only IPv6")
    p.add_argument("--json", action="store_true", help="print the sockets as JSON")
    p.set_defaults(handler=run_sockets)

    w = subparsers.add_parser(
        "who",
        help="which processes hold a port; --kill signals them (like lsof -i / fuser -k)",
        description="Show the sockets on a local port and the processes holding them.",
        epilog=WHO_EPILOG,
        formatter_class=raw,
    )
    w.add_argument("port", metavar="PORT[/tcp|/udp]", help="local port, TCP unless /udp is given")
    w.add_argument("--kill", action="store_true", help="signal every process holding the port")
    w.add_argument(
        "--signal",
        default="TERM",
        metavar="SIG",
        help="signal for --kill (name or number; default TERM)",
    )
    w.add_argument("--json", action="store_true", help="print the result as JSON")
    w.set_defaults(handler=run_who)


# -- portlib sockets --------------------------------------------------------------------------


def selection(args: argparse.Namespace) -> tuple[list[tuple[str, str]], bool]:
    """The (protocol, family) tables and whether unix sockets are wanted, as ss picks them."""
    protocols = [
        name for name, on in (("tcp", args.tcp), ("udp", args.udp), ("raw", args.raw)) if on
    ]
    unix = bool(args.unix)
    if not protocols and not unix:
        protocols = ["tcp", "udp", "raw"]
        unix = not (args.ipv4 or args.ipv6)
    families = [f for f, on in (("inet", args.ipv4), ("inet6", args.ipv6)) if on] or [
        "inet",
        "inet6",
    ]
    return [(p, f) for p in protocols for f in families], unix


def state_filter(args: argparse.Namespace) -> Callable[[Socket | UnixSocket], bool] | None:
    """ss's default shows connected sockets only; -l listening ones; -a every one."""
    from portlib.model import SocketState as S

    if args.all:
        return None
    if args.listening:
        wanted = frozenset({S.LISTEN, S.CLOSE})
        return lambda s: s.state in wanted
    hidden = frozenset({S.LISTEN, S.CLOSE, S.TIME_WAIT, S.SYN_RECV, S.NEW_SYN_RECV})
    return lambda s: s.state not in hidden


def run_sockets(args: argparse.Namespace) -> int:
    from portlib.model import Family, Protocol
    from portlib.socktable import query_tables

    pairs, unix = selection(args)
    tables = [(Protocol(p), Family(f)) for p, f in pairs]
    found = query_tables(tables, unix, keep=state_filter(args), processes=args.processes)
    if args.json:
        from portlib.output.jsonout import dumps

        print(dumps(found))
        return 0
    namer = None if args.numeric else _service_namer()
    show_netid = len({p for p, _ in pairs}) + int(unix) > 1
    text = format_table(found, show_netid=show_netid, processes=args.processes, service=namer)
    sys.stdout.write(text)
    return 0


def _service_namer() -> Callable[[int, str], str]:
    from portlib.services import service_name

    cache: dict[tuple[int, str], str] = {}

    def name(port: int, protocol: str) -> str:
        key = (port, protocol)
        found = cache.get(key)
        if found is None:
            found = (service_name(port, protocol) if protocol in ("tcp", "udp") else None) or str(
                port
            )
            cache[key] = found
        return found

    return name


def users_column(owners: Iterable[Process]) -> str:
    """ss's process column: ``users:(("nginx",pid=10,fd=6),("nginx",pid=11,fd=6))``."""
    inner = ",".join([f'("{p.name}",pid={p.pid},fd={p.fd})' for p in owners])
    return f"users:({inner})" if inner else ""


def format_table(
    found: Sequence[Socket | UnixSocket],
    *,
    show_netid: bool,
    processes: bool,
    service: Callable[[int, str], str] | None = None,
) -> str:
    """Rows in ss's layout: address right-aligned against ``:port``, columns sized to fit."""
    from portlib.model import Socket

    # Column by column, so widths come from max(map(len, ...)); tens of thousands of rows
    # share a few addresses, so their text is cached by object identity.
    netids: list[str] = []
    states: list[str] = []
    recv_q: list[str] = []
    send_q: list[str] = []
    l_addr: list[str] = []
    l_port: list[str] = []
    p_addr: list[str] = []
    p_port: list[str] = []
    seps: list[str] = []
    users: list[str] = []
    text_of: dict[int, str] = {}
    port_of = _port_texter(service)
    for s in found:
        if type(s) is Socket:
            proto = s.protocol
            local, remote = s.local, s.remote
            netids.append(proto)
            l_addr.append(text_of.get(id(local.address)) or _address(local.address, text_of))
            p_addr.append(text_of.get(id(remote.address)) or _address(remote.address, text_of))
            if service is None:  # the common -n case, inlined: tens of thousands of rows
                l_port.append(str(local.port) if local.port else "*")
                p_port.append(str(remote.port) if remote.port else "*")
            else:
                l_port.append(port_of(local.port, proto))
                p_port.append(port_of(remote.port, proto))
            recv_q.append(str(s.rx_queue))
            send_q.append(str(s.tx_queue))
            seps.append(":")
        else:
            assert not isinstance(s, Socket)
            netids.append(UNIX_NETIDS.get(s.type, s.type))
            l_addr.append(s.path or "*")
            l_port.append(str(s.inode))
            p_addr.append("*")
            p_port.append("*")
            recv_q.append("0")
            send_q.append("0")
            seps.append(" ")
        states.append(s.state)
        if processes and s.owners:
            owners = s.owners
            if len(owners) == 1:
                p = owners[0]
                users.append(f'users:(("{p.name}",pid={p.pid},fd={p.fd}))')
            else:
                users.append(users_column(owners))
        else:
            users.append("")

    def width(column: list[str], title: str) -> int:
        return max(len(title), max(map(len, column), default=0))

    w_netid, w_state = width(netids, "Netid"), width(states, "State")
    w_rq, w_sq = width(recv_q, "Recv-Q"), width(send_q, "Send-Q")
    w_la, w_lp = width(l_addr, "Local Address"), width(l_port, "Port")
    w_pa, w_pp = width(p_addr, "Peer Address"), width(p_port, "Port")
    head = (
        f"{'State':<{w_state}} {'Recv-Q':<{w_rq}} {'Send-Q':<{w_sq}} "
        f"{'Local Address':>{w_la}}:{'Port':<{w_lp}} {'Peer Address':>{w_pa}}:{'Port':<{w_pp}}"
    )
    if show_netid:
        head = f"{'Netid':<{w_netid}} {head}"
    if processes:
        head += " Process"
    lines = [
        f"{st:<{w_state}} {rq:<{w_rq}} {sq:<{w_sq}} {la:>{w_la}}{sep}{lp:<{w_lp}} "
        f"{pa:>{w_pa}}{sep}{pp:<{w_pp}} {us}"
        for st, rq, sq, la, lp, pa, pp, sep, us in zip(
            states, recv_q, send_q, l_addr, l_port, p_addr, p_port, seps, users, strict=True
        )
    ]
    if show_netid:
        lines = [f"{n:<{w_netid}} {line}" for n, line in zip(netids, lines, strict=True)]
    return "\n".join(line.rstrip() for line in [head, *lines]) + "\n"


def _address(address: IPv4Address | IPv6Address, text_of: dict[int, str]) -> str:
    mapped = getattr(address, "ipv4_mapped", None)
    text = f"::ffff:{mapped}" if mapped is not None else str(address)
    if ":" in text:  # IPv6 goes in brackets, as ss prints it
        text = f"[{text}]"
    text_of[id(address)] = text
    return text


def _port_texter(service: Callable[[int, str], str] | None) -> Callable[[int, str], str]:
    """Port -> column text: ``*`` for 0, else the number or (without -n) the service name."""
    cache: dict[tuple[int, str], str] = {}

    def text(port: int, protocol: str) -> str:
        if port == 0:
            return "*"
        if service is None:
            return str(port)
        key = (port, protocol)
        found = cache.get(key)
        if found is None:
            found = cache[key] = service(port, protocol)
        return found

    return text


# -- portlib who ------------------------------------------------------------------------------


def parse_port_spec(spec: str) -> tuple[int, str]:
    """``8000``, ``8000/tcp`` or ``53/udp`` -> (port, protocol)."""
    from portlib.socktable import SocketQueryError

    number, slash, protocol = spec.strip().partition("/")
    protocol = protocol.lower() if slash else "tcp"
    if protocol not in ("tcp", "udp"):
        raise SocketQueryError(f"bad port {spec!r}: the protocol after '/' must be tcp or udp")
    if not (number.isascii() and number.isdigit()) or not 0 < int(number) <= 65535:
        raise SocketQueryError(f"bad port {spec!r}: expected PORT[/tcp|/udp] with PORT in 1-65535")
    return int(number), protocol


def who_rows(found: Sequence[Socket]) -> str:
    """lsof's layout: COMMAND PID USER FD TYPE NODE NAME, one line per (socket, owner)."""
    from portlib.model import Family

    text_of: dict[int, str] = {}  # id(endpoint) -> text: a busy port repeats its local side

    def endpoint(end: Endpoint) -> str:
        text = text_of.get(id(end))
        if text is None:
            text = text_of[id(end)] = str(end) if end.port else f"{str(end)[:-2]}:*"
        return text

    rows = [("COMMAND", "PID", "USER", "FD", "TYPE", "NODE", "NAME")]
    for s in found:
        local = endpoint(s.local)
        name = f"{local}->{endpoint(s.remote)}" if s.remote.port else local
        name = f"{name} ({s.state})"
        kind = "IPv6" if s.family is Family.INET6 else "IPv4"
        node = s.protocol.upper()
        rows.extend(
            (p.name, str(p.pid), p.user or "?", str(p.fd), kind, node, name) for p in s.owners
        )
    w = [max(map(len, column)) for column in list(zip(*rows, strict=True))[:6]]
    return "".join(
        [
            f"{a:<{w[0]}} {b:<{w[1]}} {c:<{w[2]}} {d:<{w[3]}} {e:<{w[4]}} {f:<{w[5]}} {g}\n"
            for a, b, c, d, e, f, g in rows
        ]
    )


def run_who(args: argparse.Namespace) -> int:
    from portlib import socktable
    from portlib.errors import PortNotInUse

    port, protocol = parse_port_spec(args.port)
    if args.kill:
        sig = socktable.check_signal(args.signal)
        try:
            signalled = socktable.kill_port(port, protocol, sig)
        except PortNotInUse as exc:
            print(f"portlib: {exc}", file=sys.stderr)
            return 1
        if args.json:
            from portlib.output.jsonout import dumps

            print(dumps(signalled))
        else:
            for p in signalled:
                print(f"sent {sig.name} to PID {p.pid} ({p.name})")
        return 0
    found = socktable.who_uses(port, protocol)
    owned = [s for s in found if s.owners]
    if args.json:
        from portlib.output.jsonout import dumps

        print(dumps(found))
    elif owned:
        sys.stdout.write(who_rows(owned))
    if not owned:
        if not args.json:
            hidden = any(s.inode for s in found)
            why = " (its owners are hidden from this user; try as root)" if hidden else ""
            print(f"portlib: no process holds port {port}/{protocol}{why}", file=sys.stderr)
        return 1
    return 0


__all__ = ["register"]
