"""Pure matching: a probe's answer in, a Match or None out; never an exception.

Also the verdicts detection falls back on: ``tcpwrapped`` and the registry's name with
the printable banner.
"""

from __future__ import annotations

import struct

from portlib.scanning.versions.ber import Malformed
from portlib.scanning.versions.found import Match
from portlib.scanning.versions.rules import RULES, UDP_PARSERS, Rule

# What a parser raises on bytes that are not its protocol (Malformed is a ValueError).
PARSE_ERRORS = (Malformed, ValueError, IndexError, struct.error)


def _apply(rule: Rule, data: bytes) -> Match | None:
    try:
        return rule.apply(data)
    except PARSE_ERRORS:
        return None


def matching_rule(probe: str, data: bytes) -> tuple[Rule, Match] | None:
    """The first certain match among the rules for ``probe``'s answer, else the first
    uncertain one, else None."""
    if not data:
        return None
    soft: tuple[Rule, Match] | None = None
    for rule in RULES:
        if rule.probes and probe not in rule.probes:
            continue
        found = _apply(rule, data)
        if found is None:
            continue
        if found.certain:
            return rule, found
        soft = soft or (rule, found)
    return soft


def identify(probe: str, data: bytes) -> Match | None:
    """What ``data``, the answer to ``probe``, says the service is (None: nothing known)."""
    found = matching_rule(probe, data)
    return found[1] if found else None


def enrich(rule: Rule, match: Match, answer: bytes) -> Match:
    """``match`` refined by the answer to ``rule.follow_up`` (unchanged if unreadable)."""
    if rule.enrich is None:
        return match
    try:
        return rule.enrich(match, answer)
    except PARSE_ERRORS:
        return match


def identify_udp(data: bytes) -> Match | None:
    """What a UDP answer says: each UDP parser reads it, the first certain one wins."""
    soft = None
    for parse in UDP_PARSERS:
        try:
            found = parse(data)
        except PARSE_ERRORS:
            continue
        if found is not None and found.certain:
            return found
        soft = soft or found
    return soft


def printable(banner: bytes, limit: int = 80) -> str:
    """The banner as one line of text: printable ASCII kept, other bytes as \\xNN."""
    out = []
    for byte in banner[:limit]:
        if 0x20 <= byte < 0x7F and byte != 0x5C:
            out.append(chr(byte))
        elif byte in (0x0D, 0x0A):
            out.append("\\r" if byte == 0x0D else "\\n")
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out) + ("..." if len(banner) > limit else "")
