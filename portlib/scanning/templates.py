"""Packet templates and UDP service payloads, built by scapy once per scan.

This is the only module of the raw engine that imports scapy, and only inside
its functions, so ``import portlib`` stays cheap. Per probe, nothing here runs:
the engine patches the bytes these functions return (see ``wire.ProbeTemplate``).
"""

from __future__ import annotations

from functools import cache
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from portlib.model import IPAddress
from portlib.scanning.wire import Probe

# nmap's SYN/ACK probes: window 1024, MSS 1460 on SYN (the common fingerprint).
_TCP_WINDOW = 1024
_TTL = 64

SSDP_MSEARCH = (
    b"M-SEARCH * HTTP/1.1\r\n"
    b"HOST: 239.255.255.250:1900\r\n"
    b'MAN: "ssdp:discover"\r\n'
    b"MX: 1\r\n"
    b"ST: ssdp:all\r\n\r\n"
)


def _dns_version_bind() -> bytes:
    from scapy.layers.dns import DNS, DNSQR

    # What nmap sends to 53/udp: a CHAOS TXT query most servers answer (or refuse).
    return bytes(DNS(id=0x3A7E, rd=0, qd=DNSQR(qname="version.bind", qtype="TXT", qclass="CH")))


def _dns_root_ns() -> bytes:
    from scapy.layers.dns import DNS, DNSQR

    return bytes(DNS(id=0x3A7F, rd=0, qd=DNSQR(qname=".", qtype="NS")))


def _mdns_services() -> bytes:
    from scapy.layers.dns import DNS, DNSQR

    return bytes(DNS(id=0, qd=DNSQR(qname="_services._dns-sd._udp.local", qtype="PTR")))


def _ntp_client() -> bytes:
    from scapy.layers.ntp import NTP

    return bytes(NTP(version=4, mode=3))


def _snmp_get(version: int) -> bytes:
    from scapy.asn1.asn1 import ASN1_OID
    from scapy.layers.snmp import SNMP, SNMPget, SNMPvarbind

    # get-request for sysDescr.0 with community "public"; version 0 = v1, 1 = v2c.
    pdu = SNMPget(id=0x4B2D, varbindlist=[SNMPvarbind(oid=ASN1_OID("1.3.6.1.2.1.1.1.0"))])
    return bytes(SNMP(version=version, community=b"public", PDU=pdu))


def _netbios_ns_stat() -> bytes:
    from scapy.layers.netbios import NBNSHeader, NBNSQueryRequest

    query = NBNSQueryRequest(QUESTION_NAME="*", QUESTION_TYPE="NBSTAT")
    return bytes(NBNSHeader(NAME_TRN_ID=0x5C3A) / query)


# port -> builders of the payloads sent to it (each becomes one datagram per try).
_PAYLOAD_BUILDERS: dict[int, tuple[Any, ...]] = {
    53: (_dns_version_bind, _dns_root_ns),
    123: (_ntp_client,),
    137: (_netbios_ns_stat,),
    161: (lambda: _snmp_get(0), lambda: _snmp_get(1)),
    1900: (lambda: SSDP_MSEARCH,),
    5353: (_mdns_services,),
}

GENERIC_PAYLOAD = b""
"""Sent to every UDP port without a service payload: an empty datagram."""


@cache
def udp_payloads() -> dict[int, tuple[bytes, ...]]:
    """The table port -> payloads (scapy builds them once per process)."""
    return {
        port: tuple(build() for build in builders) for port, builders in _PAYLOAD_BUILDERS.items()
    }


def payloads_for(port: int) -> tuple[bytes, ...]:
    return udp_payloads().get(port, (GENERIC_PAYLOAD,))


def build_template(
    kind: Probe, source: IPAddress, sport: int, payload: bytes = GENERIC_PAYLOAD
) -> bytes:
    """Raw bytes of one probe (IP header included) with destination and port left unset."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6

    if isinstance(source, IPv4Address):
        ip: Any = IP(src=str(source), dst="0.0.0.0", ttl=_TTL, id=0)
    elif isinstance(source, IPv6Address):
        ip = IPv6(src=str(source), dst="::", hlim=_TTL)
    else:  # pragma: no cover - typed callers
        raise TypeError(source)
    if kind is Probe.SYN:
        l4: Any = TCP(sport=sport, dport=0, flags="S", window=_TCP_WINDOW, options=[("MSS", 1460)])
    elif kind is Probe.ACK:
        l4 = TCP(sport=sport, dport=0, flags="A", window=_TCP_WINDOW)
    else:
        l4 = UDP(sport=sport, dport=0) / payload
    return bytes(ip / l4)


def dissect(packet: bytes) -> str:
    """A one-line scapy summary of an odd reply, for debug logs."""
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6

    layer: Any = IP if packet[:1] and packet[0] >> 4 == 4 else IPv6
    return str(layer(packet).summary())
