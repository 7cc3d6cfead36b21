"""Parse ss's filter language into a :class:`~portlib.socktable.filters.SocketFilter`.

The grammar is ss's (its ``ssfilter.y``), read the way ss reads it::

    FILTER  := { state NAME | exclude NAME } [ LIST ]
    LIST    := EXPR { [ and | or ] EXPR }          (no operator means and)
    EXPR    := ( LIST ) | not EXPR | dst [=|!=] HOST | src [=|!=] HOST
             | dport [OP] PORT | sport [OP] PORT
    OP      := = == eq  != ne neq  < lt  <= le leq  > gt  >= ge geq
    HOST    := * | ADDR[/PREFIX] | ADDR[:PORT] | [IPV6[/PREFIX]][:PORT] | *:PORT | :PORT
    PORT    := [:]NUMBER | [:]SERVICE-NAME

``and`` and ``or`` have equal weight and group from the left, exactly as ss
evaluates them (its manual says otherwise; its parser does this):
``a or b and c`` is ``(a or b) and c``. ``!``, ``&``, ``&&``, ``|``, ``||`` are
the symbol forms. Words are separated by blanks; brackets may touch words.

Errors are :class:`FilterSyntaxError` naming the word at fault and its column.
Pure: service names are resolved by a function the caller passes in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from ipaddress import ip_network
from types import MappingProxyType

from portlib.errors import PortlibError, SocketQueryError
from portlib.model import SocketState
from portlib.socktable.filters import (
    ALL_STATES,
    STATE_NAMES,
    AddressMatch,
    And,
    Comparison,
    Expression,
    IPNetwork,
    Not,
    Or,
    PortMatch,
    Side,
    SocketFilter,
    flatten,
)

ServicePort = Callable[[str], int]

AND_WORDS = frozenset({"and", "&", "&&"})
OR_WORDS = frozenset({"or", "|", "||"})
NOT_WORDS = frozenset({"not", "!"})
COMPARISONS: Mapping[str, Comparison] = MappingProxyType(
    {
        "=": Comparison.EQ,
        "==": Comparison.EQ,
        "eq": Comparison.EQ,
        "!=": Comparison.NE,
        "ne": Comparison.NE,
        "neq": Comparison.NE,
        "<": Comparison.LT,
        "lt": Comparison.LT,
        "<=": Comparison.LE,
        "le": Comparison.LE,
        "leq": Comparison.LE,
        ">": Comparison.GT,
        "gt": Comparison.GT,
        ">=": Comparison.GE,
        "ge": Comparison.GE,
        "geq": Comparison.GE,
    }
)
SIDES: Mapping[str, Side] = MappingProxyType(
    {"dst": Side.DESTINATION, "src": Side.SOURCE, "dport": Side.DESTINATION, "sport": Side.SOURCE}
)
# ss predicates portlib does not evaluate, with the reason given to the user.
UNSUPPORTED: Mapping[str, str] = MappingProxyType(
    {
        "dev": "interface filters (dev) are not supported",
        "fwmark": "firewall mark filters (fwmark) are not supported",
        "cgroup": "cgroup filters are not supported",
        "autobound": "autobound is not supported",
    }
)
_FAMILY_PREFIXES = (("inet6:", 6), ("inet:", 4))
_OTHER_FAMILIES = ("unix:", "link:", "netlink:", "vsock:")


class FilterSyntaxError(SocketQueryError):
    """A socket filter does not parse; ``token`` and ``column`` (1-based) say where."""

    def __init__(self, message: str, *, text: str, token: str | None, column: int) -> None:
        where = f"at {token!r} (column {column})" if token is not None else "at the end"
        super().__init__(f"bad filter {text!r}: {message}, {where}")
        self.text = text
        self.token = token
        self.column = column


def tokenize(words: str | Sequence[str]) -> tuple[str, list[tuple[str, int]]]:
    """The filter as one line of text, and its tokens with their 0-based offsets in it.

    ``words`` is the filter as one string or as separate command-line words.
    Brackets are tokens of their own even when they touch a word.
    """
    parts = [words] if isinstance(words, str) else list(words)
    text = " ".join(parts)
    tokens: list[tuple[str, int]] = []
    start = None
    for i, char in enumerate(text + " "):
        if char.isspace() or char in "()":
            if start is not None:
                tokens.append((text[start:i], start))
                start = None
            if char in "()":
                tokens.append((char, i))
        elif start is None:
            start = i
    return text, tokens


class _Parser:
    def __init__(self, words: str | Sequence[str], service_port: ServicePort | None) -> None:
        self.text, self.tokens = tokenize(words)
        self.at = 0
        self.service_port = service_port

    # -- token access -------------------------------------------------------------------

    def peek(self) -> str | None:
        return self.tokens[self.at][0].lower() if self.at < len(self.tokens) else None

    def take(self, what: str) -> str:
        if self.at >= len(self.tokens):
            raise self.error(f"expected {what}")
        self.at += 1
        return self.tokens[self.at - 1][0]

    def error(self, message: str, back: int = 0) -> FilterSyntaxError:
        index = self.at - back
        if index < len(self.tokens):
            token, offset = self.tokens[index]
            return FilterSyntaxError(message, text=self.text, token=token, column=offset + 1)
        return FilterSyntaxError(message, text=self.text, token=None, column=len(self.text) + 1)

    # -- grammar ------------------------------------------------------------------------

    def parse(self) -> SocketFilter:
        states = self.states()
        expression = None if self.peek() is None else self.expression_list()
        if self.peek() is not None:
            raise self.error("unexpected ')'" if self.peek() == ")" else "unexpected word")
        return SocketFilter(expression, states)

    def states(self) -> frozenset[SocketState] | None:
        states: set[SocketState] | None = None
        while self.peek() in ("state", "exclude", "excl"):
            word = self.take("state").lower()
            name = self.take("a state name after 'state'")
            found = STATE_NAMES.get(name.lower())
            if found is None:
                names = ", ".join(STATE_NAMES)
                raise self.error(f"unknown state (use one of {names})", back=1)
            if word == "state":
                states = (set() if states is None else states) | found
            else:
                states = (set(ALL_STATES) if states is None else states) - found
        return None if states is None else frozenset(states)

    def expression_list(self) -> Expression:
        left = self.expression()
        while (word := self.peek()) is not None and word != ")":
            if word in ("state", "exclude", "excl"):
                raise self.error("states come first, before any other part of the filter")
            kind: type[And] | type[Or] = And
            if word in AND_WORDS or word in OR_WORDS:
                kind = Or if word in OR_WORDS else And
                self.at += 1
            right = self.expression()
            left = kind(flatten(kind, (left, right)))
        return left

    def expression(self) -> Expression:
        word = self.peek()
        if word is None:
            raise self.error("expected dst, src, dport, sport, not or '('")
        if word == "(":
            self.at += 1
            inner = self.expression_list()
            if self.peek() != ")":
                raise self.error("expected ')' to close the '('")
            self.at += 1
            return inner
        if word in NOT_WORDS:
            self.at += 1
            return Not(self.expression())
        if word in ("dst", "src"):
            self.at += 1
            return self.host_match(SIDES[word])
        if word in ("dport", "sport"):
            self.at += 1
            return self.port_match(SIDES[word])
        if word in UNSUPPORTED:
            raise self.error(UNSUPPORTED[word])
        if word == ")":
            raise self.error("unexpected ')'")
        hint = " (put blanks around operators: 'dport = :443')" if "=" in word else ""
        raise self.error(f"expected dst, src, dport, sport, not or '('{hint}")

    def host_match(self, side: Side) -> Expression:
        negate = False
        op = COMPARISONS.get(self.peek() or "")
        if op is not None:
            self.at += 1
            if op not in (Comparison.EQ, Comparison.NE):
                raise self.error(f"{side} takes = or != (addresses have no order)", back=1)
            negate = op is Comparison.NE
        text = self.take(f"an address after '{side}'")
        network, port = self.host(text)
        match = AddressMatch(side, network, port)
        return Not(match) if negate else match

    def port_match(self, side: Side) -> PortMatch:
        op = COMPARISONS.get(self.peek() or "")
        if op is not None:
            self.at += 1
        text = self.take(f"a port after '{side.value[0]}port'")
        port = self.port(text[1:] if text.startswith(":") else text)
        if port is None:
            raise self.error("expected a port number or service name, not '*'", back=1)
        return PortMatch(side, op or Comparison.EQ, port)

    # -- values -------------------------------------------------------------------------

    def host(self, text: str) -> tuple[IPNetwork | None, int | None]:
        version = None
        for prefix, number in _FAMILY_PREFIXES:
            if text.startswith(prefix):
                text, version = text[len(prefix) :], number
                break
        else:
            if text.startswith(_OTHER_FAMILIES):
                raise self.error("only inet and inet6 addresses are supported", back=1)
        if text.startswith("["):
            end = text.find("]")
            if end < 0:
                raise self.error("expected ']' after an IPv6 address", back=1)
            address, rest = text[1:end], text[end + 1 :]
            if rest and not rest.startswith(":"):
                raise self.error("expected ':PORT' after ']'", back=1)
            port_text = rest[1:] if rest else ""
        elif text.count(":") >= 2:  # a bare IPv6 address; [ADDR]:PORT carries a port
            address, port_text = text, ""
        else:
            address, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
        network = None
        if address not in ("", "*"):
            try:
                network = ip_network(address, strict=False)
            except ValueError:
                raise self.error(
                    "expected an IP address or ADDRESS/PREFIX (host names are not looked up)",
                    back=1,
                ) from None
            if version is not None and network.version != version:
                raise self.error(f"not an inet{'6' if version == 6 else ''} address", back=1)
        return network, self.port(port_text)

    def port(self, text: str) -> int | None:
        if text in ("", "*"):
            return None
        if text.isascii() and text.isdigit():
            if int(text) > 65535:
                raise self.error("a port is at most 65535", back=1)
            return int(text)
        if self.service_port is None or not text.isascii() or not text.replace("-", "").isalnum():
            raise self.error("expected a port number or service name", back=1)
        try:
            return self.service_port(text)
        except PortlibError as exc:
            raise self.error(str(exc), back=1) from None


def parse_filter(
    words: str | Sequence[str], *, service_port: ServicePort | None = None
) -> SocketFilter:
    """ss's filter syntax (one string or the command-line words) as a :class:`SocketFilter`.

    ``service_port`` turns a service name (``:https``) into its port and raises a
    PortlibError for unknown names; without it only numbers are ports.

    >>> str(parse_filter("state established '( dport = :443 or dport = :80 )'".replace("'", "")))
    'state established dport = :443 or dport = :80'
    >>> parse_filter("dport > :1024").expression
    PortMatch(side=<Side.DESTINATION: 'dst'>, op=<Comparison.GT: '>'>, port=1024)
    """
    return _Parser(words, service_port).parse()


__all__ = ["FilterSyntaxError", "parse_filter", "tokenize"]
