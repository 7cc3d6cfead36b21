"""Privileged host discovery: nmap's default ping probes over the raw engine's sockets.

Each host gets ICMP echo, TCP SYN to 443, TCP ACK to 80 and (IPv4) ICMP
timestamp; hosts on a directly attached segment also get an ARP request (IPv4)
or a neighbor solicitation (IPv6). Any answer means up, with nmap's reason:
``echo-reply``, ``syn-ack``, ``reset``, ``timestamp-reply``, ``arp-response``,
``nd-response``. Answers are validated like port probes: TCP by the keyed
cookie, ICMP echo/timestamp by an identifier and sequence derived from it.

The pure part (route tables, packet bytes, reply classification) is separate
from the I/O at the bottom, so it is testable without sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address

from portlib.model import HostState, IPAddress, Reason
from portlib.scanning.icmp import ICMP4_UNREACH, ICMP6_UNREACH, icmp_reason
from portlib.scanning.raw import bpf
from portlib.scanning.raw.cookie import Cookie
from portlib.scanning.raw.io import rawsock
from portlib.scanning.raw.links import interface_mac, read_routes
from portlib.scanning.raw.replies import quoted_probe
from portlib.scanning.raw.routes import on_link_interface
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
from portlib.scanning.timing import RttEstimator, TimingProfile

SYN_PORT = 443
ACK_PORT = 80
ECHO, TIMESTAMP = 8, 13  # cookie "ports" of the ICMP probes
_ICMP4_ECHO_REQUEST, _ICMP4_ECHO_REPLY = 8, 0
_ICMP4_TIMESTAMP_REQUEST, _ICMP4_TIMESTAMP_REPLY = 13, 14
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
    body = b"\0" * 12 if icmp_type == _ICMP4_TIMESTAMP_REQUEST else b""
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


# --- I/O ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Target:
    address: IPAddress
    key: bytes
    source: bytes
    probes: list[bytes]
    arp_on: str | None = None
    nd_on: str | None = None


async def discover_raw(
    addresses: Sequence[IPAddress], timing: TimingProfile
) -> dict[IPAddress, tuple[HostState, Reason]]:
    """Ping ``addresses`` with nmap's privileged probes; every address gets a verdict."""
    if not addresses:
        return {}
    sockets: list[socket.socket] = []
    try:
        return await _discover(list(dict.fromkeys(addresses)), timing, sockets)
    finally:
        for sock in sockets:
            sock.close()


async def _discover(
    addresses: list[IPAddress], timing: TimingProfile, sockets: list[socket.socket]
) -> dict[IPAddress, tuple[HostState, Reason]]:
    import random

    sport, held = rawsock.hold_port(socket.SOCK_STREAM, random.Random(secrets.randbits(32)))
    sockets += held
    rx = rawsock.packet_receiver(bpf.reply_filter((PROTO_TCP,), sport, arp=True))
    sockets.append(rx)
    cookie = Cookie(secrets.token_bytes(16))
    routes4 = read_routes(4)
    routes6 = read_routes(6)
    senders: dict[int, socket.socket] = {}
    targets: dict[bytes, _Target] = {}
    for address in addresses:
        src = rawsock.source_address(address).packed
        key = address.packed
        c_syn, c_ack = cookie(key, SYN_PORT, sport), cookie(key, ACK_PORT, sport)
        if isinstance(address, IPv4Address):
            probes = [
                icmp4_probe(src, key, _ICMP4_ECHO_REQUEST, cookie(key, 0, ECHO)),
                tcp_probe(src, key, sport, SYN_PORT, TCP_SYN, c_syn),
                tcp_probe(src, key, sport, ACK_PORT, TCP_ACK_FLAG, c_ack),
                icmp4_probe(src, key, _ICMP4_TIMESTAMP_REQUEST, cookie(key, 0, TIMESTAMP)),
            ]
            target = _Target(address, key, src, probes, arp_on=on_link_interface(address, routes4))
        else:
            probes = [
                icmp6_echo(src, key, cookie(key, 0, ECHO)),
                tcp_probe(src, key, sport, SYN_PORT, TCP_SYN, c_syn),
                tcp_probe(src, key, sport, ACK_PORT, TCP_ACK_FLAG, c_ack),
            ]
            target = _Target(address, key, src, probes, nd_on=on_link_interface(address, routes6))
        targets[key] = target
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        if family not in senders:
            senders[family] = rawsock.raw_sender(family)
            sockets.append(senders[family])
    link = _LinkProber(sockets)

    verdicts: dict[bytes, tuple[HostState, Reason]] = {}
    down_reasons: dict[bytes, Reason] = {}
    rtt = RttEstimator.for_profile(timing)
    sent_at: dict[bytes, float] = {}
    retried: set[bytes] = set()
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def on_readable() -> None:
        while True:
            try:
                data, addr = rx.recvfrom(bpf.SNAPLEN)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            found = classify_reply(data, addr[1], cookie, sport)
            if found is None or found[0] not in targets or found[0] in verdicts:
                continue
            host, state, reason = found
            if state is HostState.UP:
                verdicts[host] = (state, reason)
                if host in sent_at and host not in retried:  # Karn: no RTT from a resend
                    rtt.observe(time.monotonic() - sent_at[host])
                wake.set()
            else:
                down_reasons[host] = reason

    loop.add_reader(rx.fileno(), on_readable)
    try:
        for _attempt in range(timing.max_retries + 1):
            pending = [t for k, t in targets.items() if k not in verdicts]
            if not pending:
                break
            for count, target in enumerate(pending):
                if target.key in sent_at:
                    retried.add(target.key)
                sent_at.setdefault(target.key, time.monotonic())
                sock = senders[socket.AF_INET if len(target.key) == 4 else socket.AF_INET6]
                for packet in target.probes:
                    with contextlib.suppress(OSError):  # unreachable now: ICMP will say
                        sock.sendto(packet, (str(target.address), 0))
                link.solicit(target)
                if count % 64 == 63:
                    await asyncio.sleep(0)
            round_start = time.monotonic()
            while len(verdicts) < len(targets):
                # Re-read the timeout after every answer: the first replies turn the
                # initial 1 s guess into srtt + 4 rttvar, so silent (down) hosts are
                # given up on as soon as the live ones show what "late" means.
                left = round_deadline(round_start, rtt) - time.monotonic()
                if left <= 0:
                    break
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), left)
    finally:
        loop.remove_reader(rx.fileno())
    result: dict[IPAddress, tuple[HostState, Reason]] = {}
    for key, target in targets.items():
        if key in verdicts:
            result[target.address] = verdicts[key]
        else:
            result[target.address] = (HostState.DOWN, down_reasons.get(key, Reason.NO_RESPONSE))
    return result


def round_deadline(round_start: float, rtt: RttEstimator) -> float:
    """When a discovery round gives up on the hosts still silent.

    Pure; ``rtt`` already holds this scan's samples, so the deadline moves
    earlier as answers arrive (nmap's ping phase adapts the same way).

    >>> from portlib.scanning.timing import PRESETS
    >>> estimator = RttEstimator.for_profile(PRESETS[4])
    >>> round_deadline(10.0, estimator)
    10.5
    >>> estimator.observe(0.0002)
    >>> round_deadline(10.0, estimator)
    10.1
    """
    return round_start + rtt.timeout


class _LinkProber:
    """ARP requests and neighbor solicitations for directly attached targets."""

    def __init__(self, sockets: list[socket.socket]):
        self._sockets = sockets
        self._arp: socket.socket | None = None
        self._nd: socket.socket | None = None

    def solicit(self, target: _Target) -> None:
        with contextlib.suppress(OSError):
            if target.arp_on is not None:
                self._send_arp(target, target.arp_on)
            elif target.nd_on is not None:
                self._send_ns(target, target.nd_on)

    def _send_arp(self, target: _Target, interface: str) -> None:
        mac = interface_mac(interface)
        if mac is None:
            return
        if self._arp is None:
            self._arp = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
            self._sockets.append(self._arp)
        payload = arp_request(mac, target.source, target.key)
        self._arp.sendto(payload, (interface, bpf.ETH_P_ARP, 0, 0, b"\xff" * 6))

    def _send_ns(self, target: _Target, interface: str) -> None:
        mac = interface_mac(interface)
        if mac is None:
            return
        if self._nd is None:
            self._nd = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            self._nd.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            self._sockets.append(self._nd)
        message, group = neighbor_solicitation(target.source, target.key, mac)
        index = socket.if_nametoindex(interface)
        self._nd.sendto(message, (str(ip_address(group)), 0, 0, index))
