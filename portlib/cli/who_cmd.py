"""``portlib who``: which processes hold a port or address (``lsof -i``); ``--kill`` (``fuser -k``).

Selection follows lsof: ``who 8000`` is ``lsof -i :8000`` (either end of a
connection, TCP and UDP), ``tcp:8000``, ``@127.0.0.1``, ``udp@[::1]:53``,
``-s TCP:LISTEN``, ``-p PID``, ``-t`` for PIDs only. ``--kill`` signals the
processes holding the selected sockets as their *local* end (never a client
merely connected to the port), through pidfds, and never PID 1, this process
or its ancestors.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from portlib.cli.argtypes import whole_number_at_least
from portlib.textsafe import printable

if TYPE_CHECKING:
    from portlib.model import Endpoint, Family, Process, Socket
    from portlib.socktable.whoselect import Selector, StateSelection

WHO_EPILOG = """\
examples:
  portlib who 8000             sockets with port 8000 at either end, TCP and UDP (lsof -i :8000)
  portlib who tcp:8000 -sTCP:LISTEN    only the TCP listener (lsof -iTCP:8000 -sTCP:LISTEN)
  portlib who @127.0.0.1       sockets with that address at either end
  portlib who 53/udp --json    the UDP sockets on port 53, with their owners, as JSON
  kill $(portlib who -t 8000)  PIDs only, one a line (lsof -t)
  portlib who -p 1234          the internet sockets of PID 1234
  portlib who 8000 --kill      SIGTERM to the processes holding local port 8000 (fuser -k)
  portlib who 8000 --kill --wait 5    ... then SIGKILL to those still there after 5 s

ADDRESS is PORT, PORT/tcp, PORT/udp, or lsof's [46][tcp|udp][@ADDR][:PORT[-PORT]];
several add up. -p restricts the selection to those processes (lsof needs -a for that).
Exit status: 0 when some process holds the selection, 1 when none does (or, with
--kill, when the port is still held afterwards), 2 on bad input.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    w = subparsers.add_parser(
        "who",
        help="which processes hold a port; --kill signals them (like lsof -i / fuser -k)",
        description="Show the sockets with a port or address and the processes holding them.",
        epilog=WHO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    w.add_argument("selectors", nargs="*", metavar="ADDRESS", help="what to look for (see below)")
    w.add_argument(
        "-p",
        "--pid",
        action="append",
        type=whole_number_at_least(1),
        default=[],
        metavar="PID",
        help="only sockets of this process (repeatable)",
    )
    w.add_argument(
        "-s",
        "--state",
        action="append",
        default=[],
        metavar="TCP:STATES",
        help="TCP states to keep (TCP:LISTEN,ESTABLISHED) or leave out (TCP:^LISTEN)",
    )
    w.add_argument("-4", dest="ipv4", action="store_true", help="only IPv4")
    w.add_argument("-6", dest="ipv6", action="store_true", help="only IPv6")
    w.add_argument("-t", "--terse", action="store_true", help="print PIDs only, one a line")
    w.add_argument("--kill", action="store_true", help="signal the processes holding the port")
    w.add_argument(
        "--signal",
        default=None,
        metavar="SIG",
        help="signal for --kill (name or number; default TERM)",
    )
    w.add_argument(
        "--wait",
        type=_seconds,
        default=None,
        metavar="S",
        help="with --kill: wait S seconds, SIGKILL what is left, then check the port is free",
    )
    w.add_argument("--json", action="store_true", help="print the result as JSON")
    w.set_defaults(handler=run_who)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def who_rows(found: Sequence[Socket]) -> str:
    """lsof's layout: COMMAND PID USER FD TYPE NODE NAME, one line per (socket, owner)."""
    from portlib.model import Family, Protocol
    from portlib.socktable.whoselect import LSOF_STATE_NAME

    text_of: dict[int, str] = {}  # id(endpoint) -> text: a busy port repeats its local side

    def endpoint(end: Endpoint) -> str:
        text = text_of.get(id(end))
        if text is None:
            host = "*" if end.address.is_unspecified else str(end)[: -len(str(end.port)) - 1]
            text = text_of[id(end)] = f"{host}:{end.port if end.port else '*'}"
        return text

    rows = [("COMMAND", "PID", "USER", "FD", "TYPE", "NODE", "NAME")]
    for s in found:
        local = endpoint(s.local)
        name = f"{local}->{endpoint(s.remote)}" if s.remote.port else local
        if s.protocol is Protocol.TCP:
            name = f"{name} ({LSOF_STATE_NAME.get(s.state, s.state.value)})"
        kind = "IPv6" if s.family is Family.INET6 else "IPv4"
        node = s.protocol.upper()
        rows.extend(
            (printable(p.name), str(p.pid), printable(p.user or "?"), str(p.fd), kind, node, name)
            for p in s.owners
        )
    w = [max(map(len, column)) for column in list(zip(*rows, strict=True))[:6]]
    return "".join(
        [
            f"{a:<{w[0]}} {b:<{w[1]}} {c:<{w[2]}} {d:<{w[3]}} {e:<{w[4]}} {f:<{w[5]}} {g}\n"
            for a, b, c, d, e, f, g in rows
        ]
    )


def describe(selectors: Sequence[str]) -> str:
    """The selection in words for messages: ``port 8000``, ``tcp@127.0.0.1:80``."""
    text = " ".join(selectors) or "a socket"
    return f"port {text}" if selectors and all(s[:1].isdigit() for s in selectors) else text


def _selection(args: argparse.Namespace) -> tuple[list[Selector], StateSelection]:
    from portlib.errors import SocketQueryError
    from portlib.socktable.arguments import service_port
    from portlib.socktable.whoselect import parse_selector, parse_states

    if not args.selectors and not args.pid:
        raise SocketQueryError("who needs a port or an address, or -p PID")
    selectors = [parse_selector(s, service_port=service_port) for s in args.selectors]
    return selectors, parse_states(args.state)


def _families(args: argparse.Namespace) -> tuple[Family, ...]:
    from portlib.model import Family

    chosen = [f for f, on in ((Family.INET, args.ipv4), (Family.INET6, args.ipv6)) if on]
    return tuple(chosen or (Family.INET, Family.INET6))


def _of_pids(found: list[Socket], pids: list[int]) -> list[Socket]:
    """Only the sockets ``pids`` hold, each with only those owners (``lsof -a -p PID``)."""
    if not pids:
        return found
    from dataclasses import replace

    wanted = set(pids)
    kept = []
    for sock in found:
        owners = tuple(o for o in sock.owners if o.pid in wanted)
        if owners:
            kept.append(sock if len(owners) == len(sock.owners) else replace(sock, owners=owners))
    return kept


def run_who(args: argparse.Namespace) -> int:
    from portlib.socktable import select_sockets

    if (args.signal is not None or args.wait is not None) and not args.kill:
        from portlib.errors import SocketQueryError

        raise SocketQueryError("--signal and --wait go with --kill")
    selectors, states = _selection(args)
    families = _families(args)
    if args.kill:
        return _kill(args, selectors, states, families)
    found = _of_pids(select_sockets(selectors, states, families=families), args.pid)
    owned = [s for s in found if s.owners]
    if args.json:
        from portlib.output.jsonout import dumps

        print(dumps(found))
    elif args.terse:
        pids = sorted({o.pid for s in owned for o in s.owners})
        sys.stdout.write("".join(f"{pid}\n" for pid in pids))
    elif owned:
        sys.stdout.write(who_rows(owned))
    hidden = sum(1 for s in found if s.inode and not s.owners)
    if hidden and not args.json and not args.terse:
        from portlib.socktable.killing import hidden_holders_text

        print(f"portlib: {hidden_holders_text(hidden)}", file=sys.stderr)
    if not owned:
        if not args.json and not args.terse and not hidden:
            if args.selectors:
                print(f"portlib: no process holds {describe(args.selectors)}", file=sys.stderr)
            else:
                listed = ", ".join(map(str, args.pid))
                print(f"portlib: PID {listed} holds no TCP or UDP socket", file=sys.stderr)
        return 1
    return 0


def _kill(
    args: argparse.Namespace,
    selectors: list[Selector],
    states: StateSelection,
    families: tuple[Family, ...],
) -> int:
    from portlib.errors import PortNotInUse, SocketQueryError
    from portlib.socktable import check_signal, select_sockets
    from portlib.socktable.killing import PortStillHeld, signal_holders

    if not selectors:
        raise SocketQueryError("--kill needs a port or an address: whose holders to stop")
    sig = check_signal(args.signal or "TERM")
    what = describe(args.selectors)

    def holders() -> list[Socket]:
        found = select_sockets(selectors, states, local=True, families=families)
        return _of_pids(found, args.pid)

    killed: list[Process] = []
    try:
        signalled = signal_holders(
            holders(), sig, what=what, wait=args.wait, reread=holders, escalated=killed.append
        )
    except PortNotInUse:
        print(
            f"portlib: no process holds {what}, so there is nothing to stop "
            "('portlib sockets -tulnp' lists the ports in use)",
            file=sys.stderr,
        )
        return 1
    except PortStillHeld as exc:
        _report(exc.signalled, killed, sig.name, args.json)
        print(f"portlib: {exc}", file=sys.stderr)
        return 1
    _report(signalled, killed, sig.name, args.json)
    return 0


def _report(
    signalled: Sequence[Process], killed: Sequence[Process], signal_name: str, as_json: bool
) -> None:
    """What was sent: ``sent SIGTERM to PID 12 (nginx)``, then any SIGKILL after the wait."""
    if as_json:
        from portlib.output.jsonout import dumps

        print(dumps(list(signalled)))
        return
    for p in signalled:
        print(f"sent {signal_name} to PID {p.pid} ({printable(p.name)})")
    for p in killed:
        print(f"sent SIGKILL to PID {p.pid} ({printable(p.name)}): it outlived the wait")


__all__ = ["register", "who_rows"]
