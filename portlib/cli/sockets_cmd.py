"""``portlib sockets``: what ``ss`` shows, with ss's letters and filter language.

``-tanp``, ``-tul``, ``-x`` mean what they mean in ss; a filter follows the
options (``portlib sockets -tn state established '( dport = :443 )'``). ``-e -o
-i -m`` add ss's extra columns, ``-s`` prints the summary, ``-K`` closes the
sockets the filter selects, ``-E`` prints sockets as they close and ``--watch``
listeners (or whatever the filter picks) as they come and go. Text comes from
sockets_text.py; ``portlib who`` lives in who_cmd.py.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from portlib.cli.argtypes import positive_number

if TYPE_CHECKING:
    from portlib.model import Socket, SocketState, UnixSocket
    from portlib.socktable.filters import SocketFilter
    from portlib.socktable.query import Table

SOCKETS_EPILOG = """\
examples:
  portlib sockets -tanp                   every TCP socket, numeric, with processes (ss -tanp)
  portlib sockets -tulpn                  listening TCP and UDP sockets with processes
  portlib sockets -tn state established '( dport = :443 or dport = :80 )'
  portlib sockets -tnio dst 192.0.2.7     TCP internals and timers of connections to a host
  portlib sockets -s                      socket counts (ss -s)
  portlib sockets -K dst 192.0.2.7 dport = :443   close those connections (root)
  portlib sockets -E                      print TCP/UDP sockets as they close
  portlib sockets -tl --watch             print listeners as they open and close
  portlib sockets -N lab1 -tlnp           the listeners of network namespace lab1

Without -l or -a only connected sockets are shown, and without -t/-u/-w/-x every kind
is, as in ss; a 'state' in the filter replaces both. Filter words: state/exclude NAME
(established ... closing, and all, connected, synchronized, bucket, big), dst/src
ADDR[/PREFIX][:PORT] ([IPV6]:PORT), dport/sport OP :PORT (OP: = != < > <= >=, or eq ne
lt gt le ge), and, or, not, ( ). As in ss, 'and' and 'or' group from the left.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "sockets",
        help="list this machine's sockets and their processes (like ss)",
        description="List sockets from the kernel's tables, with ss's options and filters.",
        epilog=SOCKETS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    flag = p.add_argument
    flag("-t", "--tcp", action="store_true", help="TCP sockets")
    flag("-u", "--udp", action="store_true", help="UDP sockets")
    flag("-w", "--raw", action="store_true", help="raw sockets")
    flag("-x", "--unix", action="store_true", help="unix domain sockets")
    flag("-l", "--listening", action="store_true", help="only listening (and unconnected) sockets")
    flag("-a", "--all", action="store_true", help="sockets in every state")
    flag("-n", "--numeric", action="store_true", help="port numbers, not service names")
    flag("-p", "--processes", action="store_true", help="show the processes holding each socket")
    flag("-4", "--ipv4", action="store_true", help="only IPv4")
    flag("-6", "--ipv6", action="store_true", help="only IPv6")
    flag("-e", "--extended", action="store_true", help="uid, inode and cookie (sk:)")
    flag("-o", "--options", action="store_true", help="timers")
    flag("-i", "--info", action="store_true", help="TCP internals (rtt, cwnd, bytes ...)")
    flag("-m", "--memory", action="store_true", help="socket memory (skmem)")
    flag("-s", "--summary", action="store_true", help="socket counts, as ss -s")
    flag("-H", "--no-header", action="store_true", help="leave out the header line")
    flag("-N", "--net", metavar="NETNS", help="the sockets of network namespace NETNS")
    flag("-K", "--kill", action="store_true", help="close the sockets the filter selects (root)")
    flag("-E", "--events", action="store_true", help="print sockets as they close, until Ctrl-C")
    flag("--watch", action="store_true", help="print sockets as they open, change and close")
    flag(
        "--interval",
        type=positive_number,
        default=1.0,
        metavar="S",
        help="seconds between looks for -E and --watch (default 1)",
    )
    flag("--json", action="store_true", help="print the sockets (or events, one a line) as JSON")
    flag("filter", nargs="*", metavar="FILTER", help="ss's filter words (see below)")
    p.set_defaults(handler=run_sockets)


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


def default_states(args: argparse.Namespace) -> frozenset[SocketState] | None:
    """ss's states without a ``state`` word: connected ones; -l listening ones; -a all (None)."""
    from portlib.socktable.filters import DEFAULT_STATES, LISTENING_STATES

    if args.all:
        return None
    if args.listening or (args.watch and not args.filter):
        return LISTENING_STATES
    return DEFAULT_STATES


def build_filter(args: argparse.Namespace) -> SocketFilter:
    """The filter words, with the default states when they name none."""
    from portlib.socktable.arguments import service_port
    from portlib.socktable.filterparse import parse_filter
    from portlib.socktable.filters import SocketFilter

    given = parse_filter(args.filter, service_port=service_port) if args.filter else SocketFilter()
    if given.states is not None:
        return given
    return SocketFilter(given.expression, default_states(args))


def _tables(args: argparse.Namespace) -> tuple[list[Table], bool]:
    from portlib.model import Family, Protocol

    pairs, unix = selection(args)
    return [(Protocol(p), Family(f)) for p, f in pairs], unix


def run_sockets(args: argparse.Namespace) -> int:
    if args.summary:
        from portlib.cli.sockets_text import summary_text
        from portlib.socktable.summary import socket_summary

        sys.stdout.write(summary_text(socket_summary(netns_name=args.net)))
        picked = args.tcp or args.udp or args.raw or args.unix or args.listening or args.all
        if not picked and not args.filter:
            return 0
    if args.kill:
        return _destroy(args)
    if args.events or args.watch:
        return _watch(args)
    from portlib.socktable.query import Extras, query_tables

    tables, unix = _tables(args)
    extras = Extras(args.extended, args.options, args.info, args.memory)
    found = query_tables(
        tables,
        unix,
        socket_filter=build_filter(args),
        processes=args.processes,
        extras=extras,
        namespace=args.net,
    )
    _print(found, args, show_netid=len({p for p, _ in tables}) + int(unix) > 1)
    return 0


def _print(found: list[Socket | UnixSocket], args: argparse.Namespace, *, show_netid: bool) -> None:
    if args.json:
        from portlib.output.jsonout import dumps

        print(dumps(found))
        return
    from portlib.cli.sockets_text import extras_for, format_table, service_namer

    extra = extras_for(
        extended=args.extended, timers=args.options, tcp_info=args.info, memory=args.memory
    )
    text = format_table(
        found,
        show_netid=show_netid,
        processes=args.processes,
        service=None if args.numeric else service_namer(),
        header=not args.no_header,
        extra=extra,
    )
    sys.stdout.write(text)


def _destroy(args: argparse.Namespace) -> int:
    from portlib.errors import SocketQueryError
    from portlib.socktable.destroy import destroy_plan
    from portlib.socktable.query import CompiledFilter

    socket_filter = build_filter(args)
    if socket_filter.expression is None:
        raise SocketQueryError(
            "-K needs a filter that names addresses or ports (e.g. 'dport = :443'): "
            "without one it would close every socket shown"
        )
    tables, _unix = _tables(args)
    compiled = CompiledFilter.of(socket_filter)
    closed = destroy_plan([(t, compiled) for t in tables], namespace=args.net)
    _print(list(closed), args, show_netid=True)
    return 0


def _watch(args: argparse.Namespace) -> int:
    import asyncio

    from portlib.cli.sockets_text import event_lines
    from portlib.model import Socket
    from portlib.socktable.sockevents import SocketEventKind
    from portlib.socktable.watch import watch_sockets

    socket_filter = build_filter(args)
    if args.events and not args.filter:  # ss -E: every socket that closes
        from portlib.socktable.filters import SocketFilter

        socket_filter = SocketFilter()
    kinds = [p for p, on in (("tcp", args.tcp), ("udp", args.udp)) if on] or ["tcp", "udp"]
    family = "4" if args.ipv4 and not args.ipv6 else "6" if args.ipv6 and not args.ipv4 else ""
    kind = kinds[0] + family if len(kinds) == 1 else f"inet{family}"

    async def follow() -> None:
        async for event in watch_sockets(
            kind,
            filter=socket_filter,
            interval=args.interval,
            processes=args.processes,
            netns=args.net,
        ):
            if args.events and event.kind is not SocketEventKind.CLOSED:
                continue
            if not isinstance(event.socket, Socket):
                continue
            if args.json:
                from portlib.output.jsonout import dumps

                print(dumps(event, indent=None), flush=True)
            else:
                text = event_lines([event], processes=args.processes, numeric=args.numeric)
                sys.stdout.write(text)
                sys.stdout.flush()

    try:
        asyncio.run(follow())
    except KeyboardInterrupt:  # the way a watch ends
        return 0
    return 0


__all__ = ["register"]
