"""Privileged host discovery: the probes of ``packets`` sent over the raw engine's sockets.

One pass sends every probe of every host, then rounds resend to the hosts
still silent; a reply's verdict comes from ``packets.classify_reply``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address

from portlib.model import HostState, IPAddress, Reason
from portlib.scanning.discovery.packets import (
    ACK_PORT,
    ECHO,
    ICMP4_ECHO_REQUEST,
    ICMP4_TIMESTAMP_REQUEST,
    SYN_PORT,
    TIMESTAMP,
    arp_request,
    classify_reply,
    icmp4_probe,
    icmp6_echo,
    neighbor_solicitation,
    tcp_probe,
)
from portlib.scanning.raw import bpf
from portlib.scanning.raw.cookie import Cookie
from portlib.scanning.raw.io import rawsock
from portlib.scanning.raw.links import interface_mac, read_routes
from portlib.scanning.raw.routes import Route, on_link_interface
from portlib.scanning.raw.wire import (
    PROTO_TCP,
    TCP_ACK_FLAG,
    TCP_SYN,
)
from portlib.scanning.timing import RttEstimator, TimingProfile

# --- I/O ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Target:
    address: IPAddress
    key: bytes
    source: bytes
    probes: list[bytes]
    arp_on: str | None = None
    nd_on: str | None = None


def _on_link(address: IPAddress, routes: list[Route], interface: str | None) -> str | None:
    """The interface ``address`` is directly attached on, if the scan may use it."""
    found = on_link_interface(address, routes)
    return found if interface is None or found == interface else None


async def discover_raw(
    addresses: Sequence[IPAddress],
    timing: TimingProfile,
    *,
    interface: str | None = None,
    rtt: RttEstimator | None = None,
) -> dict[IPAddress, tuple[HostState, Reason]]:
    """Ping ``addresses`` with nmap's privileged probes; every address gets a verdict.

    With ``interface``, probes leave by it only, and neighbors are asked only on it.
    ``rtt`` carries what earlier calls of one scan measured, so a batch of silent
    hosts is given up on at the pace the live ones set, not at the first guess.
    """
    if not addresses:
        return {}
    sockets: list[socket.socket] = []
    try:
        estimator = rtt if rtt is not None else RttEstimator.for_profile(timing)
        unique = list(dict.fromkeys(addresses))
        return await _discover(unique, timing, sockets, interface, estimator)
    finally:
        for sock in sockets:
            sock.close()


async def _discover(
    addresses: list[IPAddress],
    timing: TimingProfile,
    sockets: list[socket.socket],
    interface: str | None,
    rtt: RttEstimator,
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
        src = rawsock.source_address(address, interface).packed
        key = address.packed
        c_syn, c_ack = cookie(key, SYN_PORT, sport), cookie(key, ACK_PORT, sport)
        if isinstance(address, IPv4Address):
            probes = [
                icmp4_probe(src, key, ICMP4_ECHO_REQUEST, cookie(key, 0, ECHO)),
                tcp_probe(src, key, sport, SYN_PORT, TCP_SYN, c_syn),
                tcp_probe(src, key, sport, ACK_PORT, TCP_ACK_FLAG, c_ack),
                icmp4_probe(src, key, ICMP4_TIMESTAMP_REQUEST, cookie(key, 0, TIMESTAMP)),
            ]
            target = _Target(
                address, key, src, probes, arp_on=_on_link(address, routes4, interface)
            )
        else:
            probes = [
                icmp6_echo(src, key, cookie(key, 0, ECHO)),
                tcp_probe(src, key, sport, SYN_PORT, TCP_SYN, c_syn),
                tcp_probe(src, key, sport, ACK_PORT, TCP_ACK_FLAG, c_ack),
            ]
            nd_on = _on_link(address, routes6, interface)
            target = _Target(address, key, src, probes, nd_on=nd_on)
        targets[key] = target
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        if family not in senders:
            senders[family] = rawsock.raw_sender(family, interface)
            sockets.append(senders[family])
    link = _LinkProber(sockets)

    verdicts: dict[bytes, tuple[HostState, Reason]] = {}
    down_reasons: dict[bytes, Reason] = {}
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
