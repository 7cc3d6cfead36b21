"""Matchers for binary and structured answers, each written from its protocol's spec.

Each takes the bytes a server sent and returns a Match or None. They may raise
``Malformed`` (or another ``ValueError``, ``IndexError``, ``struct.error``) on bytes
that are not what they expect; ``match.identify`` turns those into "no match". Pure.
"""

from __future__ import annotations

import re
import struct

from portlib.scanning.versions.ber import Malformed, children, expect, integer, read_tlv
from portlib.scanning.versions.found import Match

# --- HTTP ---------------------------------------------------------------------------------

# First token of a Server header (lower case) -> (product, CPE prefix or None).
SERVER_PRODUCTS: dict[str, tuple[str, str | None]] = {
    "nginx": ("nginx", "cpe:/a:igor_sysoev:nginx"),
    "apache": ("Apache httpd", "cpe:/a:apache:http_server"),
    "lighttpd": ("lighttpd", "cpe:/a:lighttpd:lighttpd"),
    "simplehttp": ("SimpleHTTPServer", None),
    "basehttp": ("BaseHTTPServer", None),
    "microsoft-iis": ("Microsoft IIS httpd", "cpe:/a:microsoft:internet_information_services"),
    "caddy": ("Caddy httpd", None),
    "openresty": ("OpenResty web app server", None),
}
_TITLE = re.compile(rb"<title[^>]*>([^<]{0,200})</title>", re.IGNORECASE)
_PLAIN_TO_TLS = re.compile(
    rb"plain HTTP request was sent to HTTPS port|speaking plain HTTP to an SSL"
)
_SERVER_TOKEN = re.compile(r"([^\s/()]+)(?:/([^\s()]+))?")
_DISTRIBUTIONS = ("debian", "ubuntu", "red hat", "centos", "fedora", "suse", "alpine")


def parse_http(data: bytes) -> Match | None:
    """An HTTP response: product and version from ``Server:``, the page title as extra info."""
    if not re.match(rb"HTTP/\d\.\d \d{3}", data):
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    if _PLAIN_TO_TLS.search(body):  # an HTTPS server refusing plain HTTP: try TLS
        return Match("ssl", certain=False)
    server = None
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"server":
            server = value.strip().decode("latin-1")
    product = version = os_hint = None
    notes: list[str] = []
    cpe: tuple[str, ...] = ()
    if server:
        first = _SERVER_TOKEN.match(server)
        if first is not None:
            known = SERVER_PRODUCTS.get(first.group(1).lower())
            product = known[0] if known else first.group(1)
            version = first.group(2)
            if known and known[1]:
                cpe = (f"{known[1]}:{version}" if version else known[1],)
            rest = server[first.end() :].strip()
            comment = re.match(r"\(([^)]*)\)", rest)
            if comment:
                notes.append(f"({comment.group(1)})" if known else comment.group(1))
                if comment.group(1).lower().startswith(_DISTRIBUTIONS):
                    os_hint = "Linux"
            python = re.search(r"Python/(\S+)", rest)
            if python:
                notes.append(f"Python {python.group(1)}")
    title = _TITLE.search(body)
    if title:
        text = " ".join(title.group(1).decode("utf-8", errors="replace").split())
        if text:
            notes.append(f"title: {text[:80]}")
    return Match("http", product, version, "; ".join(notes) or None, os_hint=os_hint, cpe=cpe)


# --- databases and caches -----------------------------------------------------------------


def parse_postgres(data: bytes) -> Match | None:
    """A PostgreSQL ErrorResponse: protocol 3 ('E', length, typed NUL-terminated fields)
    or, to a client announcing an older protocol, protocol 2 ('E', one message string)."""
    if len(data) < 6 or data[0:1] != b"E":
        return None
    if data[1:7] in (b"FATAL:", b"ERROR:"):
        message = data[1:].split(b"\x00", 1)[0]
        if b"protocol" not in message:
            return None
    else:
        (length,) = struct.unpack_from("!I", data, 1)
        if not 8 <= length <= 4096:
            return None
        fields = {f[:1]: f[1:] for f in data[5 : 1 + length].split(b"\x00") if f}
        if fields.get(b"S") not in (b"FATAL", b"ERROR") or b"C" not in fields:
            return None
    return Match("postgresql", "PostgreSQL DB", cpe=("cpe:/a:postgresql:postgresql",))


def parse_mysql(data: bytes) -> Match | None:
    """A MySQL/MariaDB initial handshake (protocol 10) or its error packet."""
    if len(data) < 5:
        return None
    length = int.from_bytes(data[:3], "little")
    if not 1 <= length <= 1024 or data[3] != 0:
        return None
    body = data[4 : 4 + length]
    if body[0] == 0xFF:  # ERR_Packet: the server refuses this host, still MySQL
        text = body[3:].decode("latin-1", errors="replace")
        product = "MariaDB" if "MariaDB" in text else "MySQL"
        return Match("mysql", product, extra_info="unauthorized")
    if body[0] != 10 or b"\x00" not in body[1:]:
        return None
    announced = body[1 : body.index(b"\x00", 1)].decode("latin-1")
    if not re.match(r"\d+\.\d+", announced):
        return None
    if "MariaDB" in announced:
        version = announced.removeprefix("5.5.5-")
        return Match("mysql", "MariaDB", version, cpe=("cpe:/a:mariadb:mariadb",))
    return Match("mysql", "MySQL", announced, cpe=(f"cpe:/a:mysql:mysql:{announced}",))


def parse_redis(data: bytes) -> Match | None:
    """Redis's INFO answer (a RESP bulk string), or its refusal of an unauthenticated one."""
    if data.startswith((b"-NOAUTH", b"-DENIED")):
        return Match("redis", "Redis key-value store")
    if not data.startswith(b"$"):
        return None
    found = re.search(rb"\r\nredis_version:([\d.]+)\r\n", data)
    if found is None:
        return None
    version = found.group(1).decode()
    os_found = re.search(rb"\r\nos:([^\r\n]+)", data)
    os_hint = os_found.group(1).decode("latin-1").split()[0] if os_found else None
    return Match(
        "redis",
        "Redis key-value store",
        version,
        os_hint=os_hint,
        cpe=(f"cpe:/a:redislabs:redis:{version}",),
    )


# --- DNS, NTP, SNMP -----------------------------------------------------------------------


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length & 0xC0 == 0xC0:
            return offset + 2
        if length == 0:
            return offset + 1
        offset += 1 + length


def dns_txt_answer(data: bytes) -> Match | None:
    """The answer to the version.bind CHAOS TXT query: the server's own version string."""
    if len(data) < 12:
        return None
    _id, flags, qdcount, ancount = struct.unpack_from("!HHHH", data)
    if not flags & 0x8000 or flags & 0x7800 or qdcount > 1:
        return None
    offset = 12
    for _ in range(qdcount):
        offset = _skip_name(data, offset) + 4
    text = None
    for _ in range(ancount):
        offset = _skip_name(data, offset)
        rtype, _cls, _ttl, rdlength = struct.unpack_from("!HHIH", data, offset)
        offset += 10
        rdata = data[offset : offset + rdlength]
        offset += rdlength
        if rtype == 16 and rdata:
            text = rdata[1 : 1 + rdata[0]].decode("latin-1")
    if offset > len(data):
        raise Malformed("DNS answer runs past the data")
    if text is None:
        return Match("domain")
    for pattern, product, cpe in _DNS_PRODUCTS:
        found = re.match(pattern, text)
        if found:
            version = found.group(1)
            return Match("domain", product, version, cpe=(f"{cpe}:{version}",))
    return Match("domain", extra_info=text[:80])


_DNS_PRODUCTS = (
    (r"dnsmasq-(\S+)", "dnsmasq", "cpe:/a:thekelleys:dnsmasq"),
    (r"(9\.\d+\.\d+\S*)", "ISC BIND", "cpe:/a:isc:bind"),
    (r"unbound (\S+)", "Unbound", "cpe:/a:nlnetlabs:unbound"),
    (r"PowerDNS Recursor (\S+)", "PowerDNS Recursor", "cpe:/a:powerdns:recursor"),
)


def dns_tcp_answer(data: bytes) -> Match | None:
    """The same answer over TCP, behind its two-byte length."""
    if len(data) < 14:
        return None
    (length,) = struct.unpack_from("!H", data)
    if length + 2 > len(data):
        return None
    return dns_txt_answer(data[2 : 2 + length])


def parse_ntp(data: bytes) -> Match | None:
    """An NTP server reply (RFC 5905: mode 4): version and whether it is synchronized."""
    if len(data) < 48 or data[0] & 0x07 != 4:
        return None
    leap, version, stratum = data[0] >> 6, (data[0] >> 3) & 0x07, data[1]
    synced = leap != 3 and 0 < stratum < 16
    note = f"stratum {stratum}" if synced else "unsynchronized"
    return Match("ntp", "NTP", f"v{version}", note)


# SNMP engine ID enterprise numbers (IANA private enterprise numbers) -> agent product
SNMP_ENTERPRISES: dict[int, str] = {
    8072: "net-snmp",
    2021: "ucd-snmp",
    9: "Cisco",
    311: "Microsoft",
}


def parse_snmp(data: bytes) -> Match | None:
    """An SNMP v1/v2c GetResponse (sysDescr) or an SNMPv3 report carrying the engine ID."""
    message, _ = expect(data, 0x30)
    version_value, offset = expect(message, 0x02)
    version = integer(version_value)
    if version == 3:
        return _snmp_v3_report(message, offset)
    if version not in (0, 1):
        return None
    community, offset = expect(message, 0x04, offset)
    pdu, _ = expect(message, 0xA2, offset)
    parts = list(children(pdu))
    if len(parts) != 4:
        raise Malformed("SNMP PDU")
    descr = None
    for _, binding in children(parts[3][1]):
        items = list(children(binding))
        if len(items) == 2 and items[1][0] == 0x04:
            descr = items[1][1].decode("latin-1")
    extra = f"SNMPv{1 if version == 0 else '2c'}; community {community.decode('latin-1')}"
    os_hint = "Linux" if descr and descr.startswith("Linux ") else None
    if descr:
        extra += f"; {descr[:100]}"
    return Match("snmp", extra_info=extra, os_hint=os_hint, certain=False)


def _snmp_v3_report(message: bytes, offset: int) -> Match | None:
    _header, offset = expect(message, 0x30, offset)
    security, _ = expect(message, 0x04, offset)
    usm, _ = expect(security, 0x30)
    engine, _ = expect(usm, 0x04)
    product = None
    if len(engine) >= 5 and engine[0] & 0x80:
        product = SNMP_ENTERPRISES.get(int.from_bytes(engine[:4], "big") & 0x7FFFFFFF)
    return Match("snmp", product, extra_info="SNMPv3", certain=product is not None)


# --- MQTT, LDAP, RDP, SMB -----------------------------------------------------------------


def _mqtt_packets(data: bytes) -> list[tuple[int, bytes]]:
    packets, offset = [], 0
    while offset + 2 <= len(data):
        kind, length, shift, at = data[offset], 0, 0, offset + 1
        while True:
            byte = data[at]
            length |= (byte & 0x7F) << shift
            at += 1
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise Malformed("MQTT length")
        if at + length > len(data):
            break
        packets.append((kind, data[at : at + length]))
        offset = at + length
    return packets


def parse_mqtt(data: bytes) -> Match | None:
    """CONNACK, then the retained PUBLISH of ``$SYS/broker/version`` if the broker has one."""
    packets = _mqtt_packets(data)
    if not packets or packets[0][0] != 0x20 or len(packets[0][1]) != 2:
        return None
    for kind, body in packets[1:]:
        if kind >> 4 == 3:
            (topic_length,) = struct.unpack_from("!H", body)
            topic = body[2 : 2 + topic_length]
            skip = 2 if (kind >> 1) & 0x03 else 0  # packet identifier when QoS > 0
            payload = body[2 + topic_length + skip :].decode("latin-1")
            found = re.match(r"mosquitto version (\S+)", payload)
            if topic == b"$SYS/broker/version" and found:
                version = found.group(1)
                return Match(
                    "mqtt", "Mosquitto", version, cpe=(f"cpe:/a:eclipse:mosquitto:{version}",)
                )
    return Match("mqtt", certain=False)


def parse_ldap(data: bytes) -> Match | None:
    """An LDAP searchResEntry/Done (RFC 4511) for the root DSE."""
    message, _ = expect(data, 0x30)
    _msgid, offset = expect(message, 0x02)
    tag, op, _ = read_tlv(message, offset)
    if tag not in (0x64, 0x65, 0x78, 0x61):
        return None
    product = version = None
    if tag == 0x64:
        _dn, at = expect(op, 0x04)
        attributes, _ = expect(op, 0x30, at)
        for _, attribute in children(attributes):
            kind, at = expect(attribute, 0x04)
            values, _ = expect(attribute, 0x31, at)
            texts = [v.decode("latin-1") for _, v in children(values)]
            if kind.lower() == b"objectclass" and "OpenLDAProotDSE" in texts:
                product = "OpenLDAP"
            elif kind.lower() == b"vendorname" and texts:
                product = texts[0]
            elif kind.lower() == b"vendorversion" and texts:
                version = texts[0]
    cpe = ("cpe:/a:openldap:openldap",) if product == "OpenLDAP" else ()
    return Match("ldap", product, version, cpe=cpe)


def parse_rdp(data: bytes) -> Match | None:
    """An X.224 Connection Confirm in TPKT: a Remote Desktop server."""
    if len(data) < 11 or data[0] != 3 or data[5] != 0xD0:
        return None
    return Match("ms-wbt-server", os_hint="Windows", certain=True)


def parse_smb(data: bytes) -> Match | None:
    """An SMB2 NEGOTIATE response (or an SMB1 one) behind the NetBIOS session header."""
    if len(data) < 8 or data[0] != 0:
        return None
    if data[4:8] == b"\xffSMB":
        return Match("microsoft-ds", extra_info="SMB1")
    if data[4:8] != b"\xfeSMB" or len(data) < 4 + 64 + 6:
        return None
    (dialect,) = struct.unpack_from("<H", data, 4 + 64 + 4)
    return Match("microsoft-ds", extra_info=f"SMB dialect {dialect >> 8}.{dialect & 0xFF:02x}")
