"""Pure: what an ICMP error says, in nmap's reason words. The one table every engine uses.

The connect engine reads (type, code) from a socket's error queue, the raw
engine and raw discovery from the quoting packet; all three name the error
with :func:`icmp_reason`, so the same ICMP message gets the same reason under
``-sT``, ``-sS``, ``-sU`` and ``-sn``. Which *state* a reason gives a port is
each probe kind's own rule (a UDP probe's port-unreach is ``closed``, a SYN's
is ``filtered``) and stays with the engines.

Codes are those of RFC 792/1812 (ICMPv4) and RFC 4443 (ICMPv6); the words are
nmap's: a destination-unreachable code nmap does not name is ``dest-unreach``.
"""

from __future__ import annotations

from typing import Final

from portlib.model import Reason

ICMP4_UNREACH: Final = 3
ICMP4_TIME_EXCEEDED: Final = 11
ICMP6_UNREACH: Final = 1
ICMP6_TIME_EXCEEDED: Final = 3
ICMP6_PARAM_PROBLEM: Final = 4

# Destination-unreachable code -> reason, per IP version.
UNREACH_REASONS: Final[dict[int, dict[int, Reason]]] = {
    4: {
        0: Reason.NET_UNREACH,
        1: Reason.HOST_UNREACH,
        2: Reason.PROTO_UNREACH,
        3: Reason.PORT_UNREACH,
        9: Reason.NET_PROHIBITED,  # network administratively prohibited
        10: Reason.HOST_PROHIBITED,  # host administratively prohibited
        13: Reason.ADMIN_PROHIBITED,  # iptables --reject-with icmp-admin-prohibited
    },
    6: {
        0: Reason.NO_ROUTE,  # iptables --reject-with icmp6-no-route
        1: Reason.ADMIN_PROHIBITED,  # icmp6-adm-prohibited
        2: Reason.BEYOND_SCOPE,  # beyond scope of source address
        3: Reason.HOST_UNREACH,  # address unreachable (neighbor discovery failed)
        4: Reason.PORT_UNREACH,
        5: Reason.ADMIN_PROHIBITED,  # source address failed ingress/egress policy
        6: Reason.REJECT_ROUTE,  # reject route to destination
    },
}

# ICMP error types that quote the offending packet -> their reason; the
# destination-unreachable type (None here) takes its reason from the code.
ERROR_TYPES: Final[dict[int, dict[int, Reason | None]]] = {
    4: {ICMP4_UNREACH: None, ICMP4_TIME_EXCEEDED: Reason.TIME_EXCEEDED},
    6: {
        ICMP6_UNREACH: None,
        ICMP6_TIME_EXCEEDED: Reason.TIME_EXCEEDED,
        ICMP6_PARAM_PROBLEM: Reason.PARAM_PROBLEM,  # e.g. unrecognized next header
    },
}


def icmp_reason(version: int, icmp_type: int, code: int) -> Reason | None:
    """The reason an ICMP error of IP ``version`` gives; None if it is no error about a probe."""
    types = ERROR_TYPES.get(version)
    if types is None or icmp_type not in types:
        return None
    reason = types[icmp_type]
    if reason is None:
        return UNREACH_REASONS[version].get(code, Reason.DEST_UNREACH)
    return reason


__all__ = [
    "ERROR_TYPES",
    "ICMP4_TIME_EXCEEDED",
    "ICMP4_UNREACH",
    "ICMP6_PARAM_PROBLEM",
    "ICMP6_TIME_EXCEEDED",
    "ICMP6_UNREACH",
    "UNREACH_REASONS",
    "icmp_reason",
]
