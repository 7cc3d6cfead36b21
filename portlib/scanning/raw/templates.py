"""Packet templates and UDP service payloads, built by scapy once per machine and scapy version.

scapy builds every template address-free (source ``0.0.0.0`` or ``::``, source
port 0, destination unset) together with the UDP payload table, and the bytes
are cached in ``<dir>/templates-v<FORMAT>-scapy<version>.json``, where ``<dir>``
is ``$PORTLIB_CACHE_DIR``, else ``$XDG_CACHE_HOME/portlib``, else
``~/.cache/portlib`` (see ``templatecache``). A process that finds a good cache
never imports scapy: ``build_template`` writes the source address and port into
the cached bytes and recomputes the checksums from scratch, which gives exactly
the bytes scapy builds. A missing, corrupt, foreign or stale file is rebuilt
with scapy and rewritten, silently.

This is the only module of the raw engine that imports scapy, and only inside
its functions, so ``import portlib`` stays cheap. Per probe, nothing here runs:
the engine patches the bytes these functions return (see ``wire.ProbeTemplate``).
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from portlib.model import IPAddress
from portlib.scanning.raw import templatecache
from portlib.scanning.raw.wire import (
    IP4_CHECKSUM,
    IP4_TOTAL_LEN,
    IP4_TTL,
    IP6_HOP_LIMIT,
    IP6_PAYLOAD_LEN,
    IPV6_HEADER_LEN,
    PROTO_TCP,
    PROTO_UDP,
    TCP_ACK_FLAG,
    TCP_FLAGS,
    TCP_HEADER_LEN,
    TCP_SYN,
    UDP_HEADER_LEN,
    UDP_LEN,
    Layout,
    Probe,
    checksum,
    ipv4_header_checksum,
    layout_of,
    pseudo_header_sum,
)

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

    # scapy stamps the transmit time: the cache keeps the build time, a fixed past
    # time as in nmap's NTP probe; servers answer a client request regardless.
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


def scapy_template(kind: Probe, source: IPAddress, sport: int, payload: bytes) -> bytes:
    """The probe as scapy builds it: IP header included, destination and port unset."""
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


# --- address-free templates and their cache ----------------------------------------------

# Bump when the cache file's layout changes; recipe edits are caught by _RECIPE.
FORMAT = 1
_BLANK_SOURCE: dict[int, IPAddress] = {4: IPv4Address(0), 6: IPv6Address(0)}
_TCP_FLAGS_OF = {Probe.SYN: TCP_SYN, Probe.ACK: TCP_ACK_FLAG}


@dataclass(frozen=True, slots=True)
class Tables:
    """What scapy builds once: the UDP payload table and the address-free templates."""

    payloads: dict[int, tuple[bytes, ...]]
    blanks: dict[tuple[Probe, int, bytes], bytes]  # (kind, IP version, payload) -> bytes


def _entries(
    payloads: dict[int, tuple[bytes, ...]],
) -> Iterator[tuple[str, Probe, int, bytes]]:
    """(cache key, kind, IP version, payload) of every template the cache holds."""
    for version in (4, 6):
        for kind in Probe:
            yield f"{kind.name.lower()}{version}", kind, version, GENERIC_PAYLOAD
        for port, port_payloads in payloads.items():
            for index, payload in enumerate(port_payloads):
                yield f"udp{version}:{port}:{index}", Probe.UDP, version, payload


def build_tables() -> Tables:
    """scapy builds the payload table and every address-free template."""
    payloads = {
        port: tuple(build() for build in builders) for port, builders in _PAYLOAD_BUILDERS.items()
    }
    blanks = {
        (kind, version, payload): scapy_template(kind, _BLANK_SOURCE[version], 0, payload)
        for _, kind, version, payload in _entries(payloads)
    }
    return Tables(payloads, blanks)


def _recipe_digest() -> str:
    """A digest of this file: an edited recipe must not be served stale bytes."""
    try:
        with open(__file__, "rb") as source:
            return hashlib.blake2b(source.read(), digest_size=8).hexdigest()
    except OSError:
        return ""


_RECIPE = _recipe_digest()


def _scapy_version() -> str | None:
    version = _scapy_version_file() or _scapy_version_metadata()
    if version is None:
        return None
    # It becomes part of a file name.
    if not version or not all(c.isalnum() or c in ".+-_!" for c in version):
        return None
    return version


def _scapy_version_file() -> str | None:
    """The ``VERSION`` file scapy's wheels and sdists ship, found as the import would.

    Cheaper than ``importlib.metadata``, whose import is a noticeable share of a
    scan's start-up; scapy itself is not imported.
    """
    for entry in sys.path:
        package = os.path.join(entry or ".", "scapy")
        if os.path.isfile(os.path.join(package, "__init__.py")):
            try:
                with open(os.path.join(package, "VERSION"), encoding="ascii") as text:
                    return text.read().strip()
            except (OSError, UnicodeDecodeError):
                return None  # scapy without the file (a git checkout): ask the metadata
    return None


def _scapy_version_metadata() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("scapy")  # reads the dist-info: scapy is not imported
    except metadata.PackageNotFoundError:
        return None


def cache_path() -> str | None:
    """The cache file for this scapy version, or None when there is no cache."""
    directory = templatecache.cache_dir(os.environ)
    version = _scapy_version()
    if directory is None or version is None:
        return None
    return os.path.join(directory, f"templates-v{FORMAT}-scapy{version}.json")


def encode(tables: Tables, scapy_version: str) -> dict[str, Any]:
    """The cache document: hex strings keyed by kind, family and port / payload index."""
    return {
        "format": FORMAT,
        "scapy": scapy_version,
        "recipe": _RECIPE,
        "payloads": {str(port): [p.hex() for p in ps] for port, ps in tables.payloads.items()},
        "templates": {
            key: tables.blanks[kind, version, payload].hex()
            for key, kind, version, payload in _entries(tables.payloads)
        },
    }


def decode(document: Any, scapy_version: str) -> Tables | None:
    """The tables in a cache document, or None if anything in it is not exactly right."""
    if not isinstance(document, dict):
        return None
    header = (document.get("format"), document.get("scapy"), document.get("recipe"))
    if header != (FORMAT, scapy_version, _RECIPE):
        return None
    raw_payloads = document.get("payloads")
    raw_templates = document.get("templates")
    if not isinstance(raw_payloads, dict) or not isinstance(raw_templates, dict):
        return None
    if set(raw_payloads) != {str(port) for port in _PAYLOAD_BUILDERS}:
        return None
    payloads: dict[int, tuple[bytes, ...]] = {}
    for port, builders in _PAYLOAD_BUILDERS.items():
        hexes = raw_payloads[str(port)]
        if not isinstance(hexes, list) or len(hexes) != len(builders):
            return None
        decoded = tuple(_unhex(h) for h in hexes)
        if any(p is None for p in decoded):
            return None
        payloads[port] = tuple(p for p in decoded if p is not None)
    blanks: dict[tuple[Probe, int, bytes], bytes] = {}
    expected = list(_entries(payloads))
    if set(raw_templates) != {key for key, *_ in expected}:
        return None
    for key, kind, version, payload in expected:
        blank = _unhex(raw_templates[key])
        if blank is None or not is_blank_template(blank, kind, version, payload):
            return None
        blanks[kind, version, payload] = blank
    return Tables(payloads, blanks)


def _unhex(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


def is_blank_template(blank: bytes, kind: Probe, version: int, payload: bytes) -> bool:
    """Whether ``blank`` is a well-formed address-free probe of this kind, family and payload."""
    try:
        lay = layout_of(blank)
    except (ValueError, IndexError):
        return False
    if lay.version != version or lay.l4_proto != (PROTO_UDP if kind is Probe.UDP else PROTO_TCP):
        return False
    addresses = blank[lay.src : lay.l4_offset]  # source and destination, then L4
    if version == 4:
        ip_ok = (
            blank[0] == 0x45
            and blank[IP4_TTL] == _TTL
            and _u16(blank, IP4_TOTAL_LEN) == len(blank)
            and _u16(blank, IP4_CHECKSUM) == ipv4_header_checksum(blank)
        )
    else:
        # No header checksum here: traffic class, flow label and hop limit checked by value.
        ip_ok = (
            blank[:4] == b"\x60\0\0\0"
            and blank[IP6_HOP_LIMIT] == _TTL
            and _u16(blank, IP6_PAYLOAD_LEN) == len(blank) - IPV6_HEADER_LEN
        )
    if not ip_ok or any(addresses) or any(blank[lay.sport : lay.sport + 4]):
        return False
    if not _l4_ok(blank, lay, kind, payload):
        return False
    # The transport checksum (with a zero pseudo-header address) must verify.
    return checksum(blank[lay.l4_offset :], lay.l4_proto + lay.l4_length) == 0


def _l4_ok(blank: bytes, lay: Layout, kind: Probe, payload: bytes) -> bool:
    l4 = lay.l4_offset
    if kind is Probe.UDP:
        return (
            lay.l4_length == UDP_HEADER_LEN + len(payload)
            and _u16(blank, l4 + UDP_LEN) == lay.l4_length
            and blank[l4 + UDP_HEADER_LEN :] == payload
        )
    data_offset = (blank[l4 + 12] >> 4) * 4
    return (
        len(payload) == 0
        and TCP_HEADER_LEN <= data_offset == lay.l4_length
        and blank[l4 + TCP_FLAGS] == _TCP_FLAGS_OF[kind]
    )


def _u16(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 2], "big")


def load_tables(path: str | None) -> Tables:
    """The tables from the cache file at ``path``; else built by scapy and written there."""
    version = _scapy_version() if path is not None else None
    if path is not None and version is not None:
        tables = decode(templatecache.read_json(path), version)
        if tables is not None:
            return tables
    tables = build_tables()
    if path is not None and version is not None:
        templatecache.write_json(path, encode(tables, version))
    return tables


@cache
def _tables() -> Tables:
    return load_tables(cache_path())


@cache
def _blank_outside_table(kind: Probe, version: int, payload: bytes) -> bytes:
    return scapy_template(kind, _BLANK_SOURCE[version], 0, payload)


# --- per scan -------------------------------------------------------------------------


def udp_payloads() -> dict[int, tuple[bytes, ...]]:
    """The table port -> payloads (scapy builds them once per machine and scapy version)."""
    return _tables().payloads


def payloads_for(port: int) -> tuple[bytes, ...]:
    return udp_payloads().get(port, (GENERIC_PAYLOAD,))


def build_template(
    kind: Probe, source: IPAddress, sport: int, payload: bytes = GENERIC_PAYLOAD
) -> bytes:
    """Raw bytes of one probe (IP header included) with destination and port left unset.

    Byte for byte what ``scapy_template`` gives, from the cached address-free
    bytes; only a payload outside the UDP table makes scapy build one.
    """
    if isinstance(source, IPv4Address):
        version = 4
    elif isinstance(source, IPv6Address):
        version = 6
    else:  # pragma: no cover - typed callers
        raise TypeError(source)
    blank = _tables().blanks.get((kind, version, payload))
    if blank is None:
        blank = _blank_outside_table(kind, version, payload)
    return addressed(blank, source.packed, sport)


def addressed(blank: bytes, source: bytes, sport: int) -> bytes:
    """``blank`` with ``source`` and ``sport`` written in and its checksums recomputed."""
    packet = bytearray(blank)
    lay = layout_of(blank)
    packet[lay.src : lay.src + len(source)] = source
    struct.pack_into("!H", packet, lay.sport, sport)
    struct.pack_into("!H", packet, lay.l4_checksum, 0)
    dst = bytes(packet[lay.dst : lay.dst + len(source)])
    pseudo = pseudo_header_sum(source, dst, lay.l4_proto, lay.l4_length)
    l4_sum = checksum(packet[lay.l4_offset :], pseudo)
    if l4_sum == 0 and lay.l4_proto == PROTO_UDP:
        l4_sum = 0xFFFF  # UDP: zero means "no checksum" (RFC 768), as scapy writes it
    struct.pack_into("!H", packet, lay.l4_checksum, l4_sum)
    if lay.version == 4:
        struct.pack_into("!H", packet, IP4_CHECKSUM, ipv4_header_checksum(packet))
    return bytes(packet)
