"""Pure: the bytes of nmap's default ping probes, and what a reply to them proves.

Each host gets ICMP echo, TCP SYN to 443, TCP ACK to 80 and (IPv4) ICMP
timestamp; hosts on a directly attached segment also get an ARP request (IPv4)
or a neighbor solicitation (IPv6). Any answer means up, with nmap's reason:
``echo-reply``, ``syn-ack``, ``reset``, ``timestamp-reply``, ``arp-response``,
``nd-response``. Answers are validated like port probes: TCP by the keyed
cookie, ICMP echo/timestamp by an identifier and sequence derived from it.
"""

from __future__ import annotations

import struct

from portlib.model import HostState, Reason
from portlib.scanning.icmp import ICMP4_UNREACH, ICMP6_UNREACH, icmp_reason
from portlib.scanning.raw import bpf
from portlib.scanning.raw.cookie import Cookie
from portlib.scanning.raw.replies import quoted_probe
from portlib.scanning.raw.wire import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    TCP_ACK_FLAG,
    TCP_RST,
    TCP_SYN,
    checksum,
    pseudo_header_sum,
)

SYN_PORT = 443
ACK_PORT = 80
ECHO, TIMESTAMP = 8, 13  # cookie "ports" of the ICMP probes
ICMP4_ECHO_REQUEST, _ICMP4_ECHO_REPLY = 8, 0
ICMP4_TIMESTAMP_REQUEST, _ICMP4_TIMESTAMP_REPLY = 13, 14
_ICMP6_ECHO_REQUEST, _ICMP6_ECHO_REPLY = 128, 129
_ICMP6_NEIGHBOR_SOLICIT, _ICMP6_NEIGHBOR_ADVERT = 135, 136
_ARP_REQUEST, _ARP_REPLY = 1, 2

Found = tuple[bytes, HostState, Reason]

# --- probe bytes --------------------------------------------------------------------


def icmp_id_seq(cookie: int) -> tuple[int, int]:
    return cookie >> 16, cookie & 0xFFFF


def icmp4_probe(src: bytes, dst: bytes, icmp_type: int, cookie: int, ident: int = 0) -> bytes:
    """An IPv4 ICMP echo or timestamp request (IP header included)."""
    ident, seq = icmp_id_seq(cookie)
    body = b"\0" * 12 if icmp_type == ICMP4_TIMESTAMP_REQUEST else b""
    icmp = bytearray(struct.pack("!BBHHH", icmp_type, 0, 0, ident, seq) + body)
    struct.pack_into("!H", icmp, 2, checksum(icmp))
    return _ipv4(src, dst, PROTO_ICMP, bytes(icmp))


def icmp6_echo(src: bytes, dst: bytes, cookie: int) -> bytes:
    ident, seq = icmp_id_seq(cookie)
    icmp = bytearray(struct.pack("!BBHHH", _ICMP6_ECHO_REQUEST, 0, 0, ident, seq))
    struct.pack_into("!H", icmp, 2, checksum(icmp, pseudo_header_sum(src, dst, 58, len(icmp))))
    return _ipv6(src, dst, PROTO_ICMPV6, bytes(icmp), hop_limit=64)


def tcp_probe(src: bytes, dst: bytes, sport: int, dport: int, flags: int, cookie: int) -> bytes:
    """A bare TCP SYN (seq = cookie) or ACK (ack = cookie) probe."""
    ack = cookie if flags & TCP_ACK_FLAG else 0
    tcp = bytearray(struct.pack("!HHIIBBHHH", sport, dport, cookie, ack, 5 << 4, flags, 1024, 0, 0))
    struct.pack_into("!H", tcp, 16, checksum(tcp, pseudo_header_sum(src, dst, 6, len(tcp))))
    if len(dst) == 4:
        return _ipv4(src, dst, PROTO_TCP, bytes(tcp))
    return _ipv6(src, dst, PROTO_TCP, bytes(tcp), hop_limit=64)


def neighbor_solicitation(src: bytes, target: bytes, mac: bytes) -> tuple[bytes, bytes]:
    """(ICMPv6 message, solicited-node multicast address); the kernel fills the checksum."""
    group = bytes.fromhex("ff0200000000000000000001ff") + target[13:]
    option = struct.pack("!BB", 1, 1) + mac  # source link-layer address
    message = struct.pack("!BBHI", _ICMP6_NEIGHBOR_SOLICIT, 0, 0, 0) + target + option
    return message, group


def arp_request(sender_mac: bytes, sender_ip: bytes, target_ip: bytes) -> bytes:
    """An ARP request payload (the link header is the packet socket's job)."""
    return struct.pack("!HHBBH", 1, 0x0800, 6, 4, _ARP_REQUEST) + (
        sender_mac + sender_ip + b"\0" * 6 + target_ip
    )


def _ipv4(src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    header = bytearray(struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0))
    header += src + dst
    struct.pack_into("!H", header, 10, checksum(header))
    return bytes(header) + payload


def _ipv6(src: bytes, dst: bytes, proto: int, payload: bytes, *, hop_limit: int) -> bytes:
    return struct.pack("!IHBB", 0x60000000, len(payload), proto, hop_limit) + src + dst + payload


# --- reply classification (pure) -----------------------------------------------------


def classify_reply(pkt: bytes, ethertype: int, cookie: Cookie, sport: int) -> Found | None:
    """(host, state, reason) that a received packet proves, or None for strays."""
    if ethertype == bpf.ETH_P_ARP:
        if len(pkt) >= 28 and struct.unpack_from("!HHBBH", pkt) == (1, 0x0800, 6, 4, _ARP_REPLY):
            return pkt[14:18], HostState.UP, Reason.ARP_RESPONSE
        return None
    if len(pkt) < 28:
        return None
    version = pkt[0] >> 4
    if version == 4:
        ihl = (pkt[0] & 0x0F) * 4
        proto, src, off = pkt[9], pkt[12:16], ihl
    elif version == 6 and len(pkt) >= 48:
        proto, src, off = pkt[6], pkt[8:24], 40
    else:
        return None
    if proto == PROTO_TCP and len(pkt) >= off + 20:
        return _tcp_reply(pkt, off, src, cookie, sport)
    if proto in (PROTO_ICMP, PROTO_ICMPV6) and len(pkt) >= off + 8:
        return _icmp_reply(pkt, off, src, proto, cookie, sport)
    return None


def _tcp_reply(pkt: bytes, off: int, src: bytes, cookie: Cookie, sport: int) -> Found | None:
    their_port, dport, seq, ack = struct.unpack_from("!HHII", pkt, off)
    flags = pkt[off + 13]
    if dport != sport:
        return None
    syn_acked = ack == (cookie(src, SYN_PORT, sport) + 1) & 0xFFFFFFFF
    if their_port == SYN_PORT and flags & TCP_ACK_FLAG and syn_acked:
        if flags & TCP_RST:
            return src, HostState.UP, Reason.RESET
        if flags & TCP_SYN:
            return src, HostState.UP, Reason.SYN_ACK
    if their_port == ACK_PORT and flags & TCP_RST and seq == cookie(src, ACK_PORT, sport):
        return src, HostState.UP, Reason.RESET
    return None


def _icmp_reply(
    pkt: bytes, off: int, src: bytes, proto: int, cookie: Cookie, sport: int
) -> Found | None:
    icmp_type, code = pkt[off], pkt[off + 1]
    ident, seq = struct.unpack_from("!HH", pkt, off + 4)
    if proto == PROTO_ICMP:
        if icmp_type == _ICMP4_ECHO_REPLY and (ident, seq) == icmp_id_seq(cookie(src, 0, ECHO)):
            return src, HostState.UP, Reason.ECHO_REPLY
        if icmp_type == _ICMP4_TIMESTAMP_REPLY and (ident, seq) == icmp_id_seq(
            cookie(src, 0, TIMESTAMP)
        ):
            return src, HostState.UP, Reason.TIMESTAMP_REPLY
        version = 4
    else:
        if icmp_type == _ICMP6_ECHO_REPLY and (ident, seq) == icmp_id_seq(cookie(src, 0, ECHO)):
            return src, HostState.UP, Reason.ECHO_REPLY
        if icmp_type == _ICMP6_NEIGHBOR_ADVERT and len(pkt) >= off + 24:
            return pkt[off + 8 : off + 24], HostState.UP, Reason.ND_RESPONSE
        version = 6
    if icmp_type != (ICMP4_UNREACH if version == 4 else ICMP6_UNREACH):
        return None
    # An unreachable about our SYN/ACK probe: the host is down, and this says why.
    quoted = quoted_probe(pkt, off + 8)
    if quoted is None:
        return None
    qproto, dst, _mark, qsport, qdport, qseq = quoted
    if qproto != PROTO_TCP or qsport != sport or qdport not in (SYN_PORT, ACK_PORT):
        return None
    if qseq != cookie(dst, qdport, sport):
        return None
    reason = icmp_reason(version, icmp_type, code)
    if reason is None or reason is Reason.PORT_UNREACH:
        return None  # a port unreachable comes from a live host but is no ping answer
    return dst, HostState.DOWN, reason
