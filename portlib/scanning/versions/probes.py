"""The probe table: what detection sends, where it is likely to be heard, and how rare it is.

Every payload here is written from the protocol's own specification and asks only for
what a server tells any client before a login: greetings, version banners, handshakes,
read-only queries. Nothing logs in, writes, or changes state. Pure data plus the pure
ordering of probes for one port (no I/O).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cache

from portlib.model import Protocol

NULL = "NULL"  # send nothing, listen for a greeting
TLS = "TLS"  # a TLS handshake; detection then runs again inside the tunnel

PRINTER_PORTS = range(9100, 9108)  # raw print ports print whatever arrives: send nothing


@dataclass(frozen=True, slots=True)
class Probe:
    """One probe: ``payload`` sent on a fresh connection (or datagram), answers matched by
    the rules that name this probe. ``rarity`` 1-9 as nmap's intensity levels: a probe
    runs on ports outside ``ports`` only when the intensity is at least its rarity."""

    name: str
    protocol: Protocol
    payload: bytes
    ports: frozenset[int]
    rarity: int
    tls_ports: frozenset[int] = frozenset()  # ports where it usually runs inside TLS


def _ports(*ports: int) -> frozenset[int]:
    return frozenset(ports)


def _postgres_old_protocol() -> bytes:
    # StartupMessage announcing protocol 1.0, which every server since 7.4 rejects
    # with an ErrorResponse before any authentication.
    return struct.pack("!II", 8, 0x00010000)


def _mqtt_connect_and_version() -> bytes:
    # CONNECT (MQTT 3.1.1, clean session, no credentials), then SUBSCRIBE to the
    # broker's read-only $SYS version topic: the retained answer names the broker.
    client = b"portlib"
    var = b"\x00\x04MQTT\x04\x02\x00\x0a" + struct.pack("!H", len(client)) + client
    connect = b"\x10" + bytes([len(var)]) + var
    topic = b"$SYS/broker/version"
    sub = b"\x00\x01" + struct.pack("!H", len(topic)) + topic + b"\x00"
    return connect + b"\x82" + bytes([len(sub)]) + sub


def _ldap_root_dse() -> bytes:
    # searchRequest (RFC 4511) for the root DSE's objectClass and vendor attributes,
    # no bind: servers answer it anonymously.
    def tlv(tag: int, body: bytes) -> bytes:
        return bytes([tag, len(body)]) + body

    attrs = b"".join(tlv(0x04, a) for a in (b"objectClass", b"vendorName", b"vendorVersion"))
    search = tlv(
        0x63,
        tlv(0x04, b"")
        + tlv(0x0A, b"\x00")
        + tlv(0x0A, b"\x00")
        + tlv(0x02, b"\x00")
        + tlv(0x02, b"\x00")
        + tlv(0x01, b"\x00")
        + tlv(0x87, b"objectClass")
        + tlv(0x30, attrs),
    )
    return tlv(0x30, tlv(0x02, b"\x07") + search)


def _rdp_negotiation() -> bytes:
    # TPKT + X.224 Connection Request with an RDP Negotiation Request ([MS-RDPBCGR]
    # 2.2.1.1), asking for TLS or CredSSP: the server's Connection Confirm names RDP.
    neg = struct.pack("<BBHI", 0x01, 0x00, 8, 0x03)
    x224 = bytes([6 + len(neg), 0xE0, 0, 0, 0, 0, 0]) + neg
    return struct.pack("!BBH", 3, 0, 4 + len(x224)) + x224


def _smb2_negotiate() -> bytes:
    # SMB2 NEGOTIATE ([MS-SMB2] 2.2.3) offering dialects 2.0.2-3.0.2, in a NetBIOS
    # session message header.
    dialects = (0x0202, 0x0210, 0x0300, 0x0302)
    header = b"\xfeSMB" + struct.pack("<HHIHHIIQIIQ16s", 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b"")
    body = struct.pack("<HHHHI16sQ", 36, len(dialects), 1, 0, 0, b"portlib-smb2-neg", 0)
    body += b"".join(struct.pack("<H", d) for d in dialects)
    message = header + body
    return struct.pack("!I", len(message)) + message


def _dns_tcp_version_bind() -> bytes:
    # The UDP version.bind query portlib already builds, framed for TCP (RFC 1035 4.2.2).
    from portlib.scanning.raw.templates import payloads_for

    query = payloads_for(53)[0]
    return struct.pack("!H", len(query)) + query


def snmp_v3_discovery() -> bytes:
    """An SNMPv3 discovery request (RFC 3414 4): empty engine ID and user, reportable.
    The agent's Report carries its engine ID, whose enterprise number names the agent."""

    def tlv(tag: int, body: bytes) -> bytes:
        return bytes([tag, len(body)]) + body

    def integer(value: int) -> bytes:
        return tlv(0x02, value.to_bytes(4, "big"))

    header = tlv(0x30, integer(0x4B2E) + integer(65507) + tlv(0x04, b"\x04") + integer(3))
    usm = tlv(0x04, tlv(0x30, tlv(0x04, b"") + integer(0) + integer(0) + tlv(0x04, b"") * 3))
    pdu = tlv(0xA0, integer(0x4B2F) + integer(0) + integer(0) + tlv(0x30, b""))
    scoped = tlv(0x30, tlv(0x04, b"") + tlv(0x04, b"") + pdu)
    return tlv(0x30, integer(3) + header + usm + scoped)


_HTTP_PORTS = _ports(80, 81, 443, 591, 3000, 5000, 8000, 8008, 8080, 8081, 8088, 8443, 8444,
                     8888, 9000, 9443, 18080)  # fmt: skip
_TLS_PORTS = _ports(443, 465, 563, 636, 853, 989, 990, 992, 993, 994, 995, 5061, 5986, 6697,
                    8443, 8444, 9443)  # fmt: skip


@cache
def tcp_probes() -> tuple[Probe, ...]:
    """Every TCP probe, cheapest and most common first (built once: the DNS one comes
    from the raw scanner's payload table, which may need scapy the first time)."""
    tcp = Protocol.TCP
    return (
        Probe(NULL, tcp, b"", frozenset(), 1),
        Probe("GetRequest", tcp, b"GET / HTTP/1.0\r\n\r\n", _HTTP_PORTS, 1, _TLS_PORTS),
        Probe(TLS, tcp, b"", _TLS_PORTS, 1),
        Probe("RedisInfo", tcp, b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n", _ports(6379, 6380), 2),
        Probe("MemcachedVersion", tcp, b"version\r\n", _ports(11211), 2),
        Probe("PostgresStartup", tcp, _postgres_old_protocol(), _ports(5432, 5433), 2),
        Probe("DNSVersionBind", tcp, _dns_tcp_version_bind(), _ports(53, 5353), 2),
        Probe("MQTTConnect", tcp, _mqtt_connect_and_version(), _ports(1883, 8883), 3, _ports(8883)),
        Probe("LDAPRootDSE", tcp, _ldap_root_dse(), _ports(389, 636, 3268), 3, _ports(636)),
        Probe("RDPNegotiation", tcp, _rdp_negotiation(), _ports(3389), 4),
        Probe("SMB2Negotiate", tcp, _smb2_negotiate(), _ports(445, 139), 4),
        Probe("GenericLines", tcp, b"\r\n\r\n", frozenset(), 5),
    )


def probe_order(probes: tuple[Probe, ...], port: int, intensity: int) -> list[Probe]:
    """The probes to try on ``port`` after the NULL probe: the port's likely ones first,
    then the rest whose rarity is within ``intensity``, each group by rarity."""
    if port in PRINTER_PORTS:
        return []
    rest = [p for p in probes if p.name != NULL]
    likely = [p for p in rest if port in p.ports]
    others = [p for p in rest if port not in p.ports and p.rarity <= intensity]
    # on a port that usually speaks TLS, the handshake comes before any plain probe
    likely.sort(key=lambda p: (p.rarity, p.name != TLS))
    return likely + sorted(others, key=lambda p: p.rarity)
