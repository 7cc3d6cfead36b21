"""The facts detection reports from a server's X.509 certificate (RFC 5280), read from
its DER bytes: subject, issuer, subjectAltName and validity. Pure; nothing is verified."""

from __future__ import annotations

import datetime as _dt
from ipaddress import ip_address

from portlib.model import Certificate
from portlib.scanning.versions.ber import Malformed, children, expect, oid, read_tlv

SEQUENCE, SET = 0x30, 0x31
_SAN = "2.5.29.17"
# attribute type OID -> the short name RFC 4514 writes for it
_ATTRIBUTE_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "1.2.840.113549.1.9.1": "emailAddress",
    "0.9.2342.19200300.100.1.25": "DC",
}
_STRING_TAGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be"}


def _name(value: bytes) -> str:
    parts = []
    for tag, rdn in children(value):
        if tag != SET:
            raise Malformed("name: RDN is not a SET")
        for _, pair in children(rdn):
            kind, end = expect(pair, 0x06)
            string_tag, text, _ = read_tlv(pair, end)
            decoded = text.decode(_STRING_TAGS.get(string_tag, "latin-1"), errors="replace")
            parts.append(f"{_ATTRIBUTE_NAMES.get(oid(kind), oid(kind))}={decoded}")
    return ",".join(parts)


def _time(tag: int, value: bytes) -> _dt.datetime | None:
    text = value.decode("ascii", errors="replace").rstrip("Z")
    try:
        if tag == 0x17:  # UTCTime: two-digit years 50-99 are 19xx (RFC 5280 4.1.2.5.1)
            parsed = _dt.datetime.strptime(text, "%y%m%d%H%M%S")
            if parsed.year >= 2050:
                parsed = parsed.replace(year=parsed.year - 100)
        else:
            parsed = _dt.datetime.strptime(text, "%Y%m%d%H%M%S")
    except ValueError:
        return None
    return parsed.replace(tzinfo=_dt.UTC)


def _alt_names(extensions: bytes) -> tuple[str, ...]:
    names: list[str] = []
    sequence, _ = expect(extensions, SEQUENCE)
    for _, extension in children(sequence):
        items = list(children(extension))
        if not items or items[0][0] != 0x06 or oid(items[0][1]) != _SAN:
            continue
        inner, _ = expect(items[-1][1], SEQUENCE)
        for tag, general in children(inner):
            if tag == 0x82:  # dNSName
                names.append(general.decode("ascii", errors="replace"))
            elif tag == 0x87 and len(general) in (4, 16):  # iPAddress
                names.append(str(ip_address(general)))
    return tuple(names)


def parse_certificate(der: bytes) -> Certificate | None:
    """The certificate's facts, or None when ``der`` is not a certificate this can read."""
    try:
        certificate, _ = expect(der, SEQUENCE)
        tbs, _ = expect(certificate, SEQUENCE)
        fields = list(children(tbs))
        if fields and fields[0][0] == 0xA0:  # explicit version
            fields = fields[1:]
        if len(fields) < 6:
            raise Malformed("short tbsCertificate")
        issuer, subject = _name(fields[2][1]), _name(fields[4][1])
        validity = list(children(fields[3][1]))
        if len(validity) != 2:
            raise Malformed("validity")
        extensions = next((v for t, v in fields[6:] if t == 0xA3), None)
        alt_names = _alt_names(extensions) if extensions is not None else ()
    except (Malformed, ValueError):
        return None
    return Certificate(
        subject=subject,
        issuer=issuer,
        alt_names=alt_names,
        not_before=_time(*validity[0]),
        not_after=_time(*validity[1]),
        self_signed=subject == issuer,
    )
