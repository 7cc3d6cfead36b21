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
    """Rows in ss's layout: address right-aligned against ``:port``, columns sized to fit.

    Two passes over the sockets: the first sizes the columns (addresses are few and
    their text is cached by object identity; numbers are sized by their largest
    value), the second writes each line with one format string.
    """
    from portlib.model import Socket

    port_of = _port_texter(service)
    local_text: dict[int, str] = {}  # id(address) -> text, for addresses seen as local
    peer_text: dict[int, str] = {}
    w_netid, w_state, w_la, w_pa, w_lp, w_pp = 5, 5, 13, 12, 4, 4
    most_rq = most_sq = top_lport = top_pport = 0
    for s in found:
        if type(s) is Socket:
            local, remote = s.local, s.remote
            if id(local.address) not in local_text:
                local_text[id(local.address)] = _address(local.address)
            if id(remote.address) not in peer_text:
                peer_text[id(remote.address)] = _address(remote.address)
            if s.rx_queue > most_rq:
                most_rq = s.rx_queue
            if s.tx_queue > most_sq:
                most_sq = s.tx_queue
            if service is None:
                if local.port > top_lport:
                    top_lport = local.port
                if remote.port > top_pport:
                    top_pport = remote.port
            else:
                w_lp = max(w_lp, len(port_of(local.port, s.protocol)))
                w_pp = max(w_pp, len(port_of(remote.port, s.protocol)))
        else:
            assert not isinstance(s, Socket)
            w_la = max(w_la, len(s.path or "*"))
            w_lp = max(w_lp, len(str(s.inode)))
            w_netid = max(w_netid, len(UNIX_NETIDS.get(s.type, s.type)))
    w_state = max([w_state, *map(len, {s.state for s in found})])
    w_la = max([w_la, *map(len, local_text.values())])
    w_pa = max([w_pa, *map(len, peer_text.values())])
    w_rq, w_sq = max(6, len(str(most_rq))), max(6, len(str(most_sq)))
    w_lp, w_pp = max(w_lp, len(str(top_lport))), max(w_pp, len(str(top_pport)))

    head = (
        f"{'State':<{w_state}} {'Recv-Q':<{w_rq}} {'Send-Q':<{w_sq}} "
        f"{'Local Address':>{w_la}}:{'Port':<{w_lp}} {'Peer Address':>{w_pa}}:{'Port':<{w_pp}}"
    )
    if show_netid:
        head = f"{'Netid':<{w_netid}} {head}"
    if processes:
        head += " Process"
    # %-templates with the widths baked in: about 3x cheaper per row than f-strings
    # with nested width fields, which re-parse their format spec on every value.
    lead = f"%-{w_netid}s " if show_netid else "%s"
    cols = f"%-{w_state}s %-{w_rq}d %-{w_sq}d "
    inet_row = f"{lead}{cols}%{w_la}s:%-{w_lp}s %{w_pa}s:%-{w_pp}s %s"
    unix_row = f"{lead}{cols}%{w_la}s %-{w_lp}s %{w_pa}s %-{w_pp}s %s"
    lines = [head]
    add = lines.append
    for s in found:
        users = ""
        if processes and s.owners:
            owners = s.owners
            if len(owners) == 1:
                p = owners[0]
                users = f'users:(("{p.name}",pid={p.pid},fd={p.fd}))'
            else:
                users = users_column(owners)
        if type(s) is Socket:
            local, remote = s.local, s.remote
            if service is None:
                lport: object = local.port or "*"
                pport: object = remote.port or "*"
            else:
                lport, pport = port_of(local.port, s.protocol), port_of(remote.port, s.protocol)
            add(
                inet_row
                % (
                    s.protocol if show_netid else "",
                    s.state,
                    s.rx_queue,
                    s.tx_queue,
                    local_text[id(local.address)],
                    lport,
                    peer_text[id(remote.address)],
                    pport,
                    users,
                )
            )
        else:
            assert not isinstance(s, Socket)
            netid = UNIX_NETIDS.get(s.type, s.type) if show_netid else ""
            add(unix_row % (netid, s.state, 0, 0, s.path or "*", s.inode, "*", "*", users))
    return "\n".join([line.rstrip() for line in lines]) + "\n"


def _address(address: IPv4Address | IPv6Address) -> str:
    mapped = getattr(address, "ipv4_mapped", None)
    text = f"::ffff:{mapped}" if mapped is not None else str(address)
    return f"[{text}]" if ":" in text else text  # IPv6 goes in brackets, as ss prints it


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
        except PortNotInUse:
            print(
                f"portlib: no process holds port {port}/{protocol}, so there is nothing to "
                "stop ('portlib sockets -tulnp' lists the ports in use)",
                file=sys.stderr,
            )
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
