"""A small reader of ASN.1 BER/DER (X.690): tag, length, value. Pure; malformed input
raises ``Malformed`` (a ``ValueError``), which the matchers turn into "no match"."""

from __future__ import annotations

from collections.abc import Iterator


class Malformed(ValueError):
    """The bytes are not the structure a parser expected."""


def read_tlv(data: bytes, offset: int = 0) -> tuple[int, bytes, int]:
    """(tag byte, value, offset after it) of the element at ``offset``.

    Only single-byte tags, and definite lengths of up to four bytes: all that
    SNMP, LDAP and X.509 use."""
    if offset + 2 > len(data):
        raise Malformed("truncated element")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise Malformed("multi-byte tag")
    first = data[offset + 1]
    at = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or at + count > len(data):
            raise Malformed("bad length")
        length = int.from_bytes(data[at : at + count], "big")
        at += count
    end = at + length
    if end > len(data):
        raise Malformed("element runs past the data")
    return tag, data[at:end], end


def children(value: bytes) -> Iterator[tuple[int, bytes]]:
    """The (tag, value) elements laid end to end in a constructed value."""
    offset = 0
    while offset < len(value):
        tag, inner, offset = read_tlv(value, offset)
        yield tag, inner


def expect(data: bytes, tag: int, offset: int = 0) -> tuple[bytes, int]:
    """The value of the element at ``offset``, which must carry ``tag``."""
    found, value, end = read_tlv(data, offset)
    if found != tag:
        raise Malformed(f"tag {found:#x}, expected {tag:#x}")
    return value, end


def integer(value: bytes) -> int:
    if not value:
        raise Malformed("empty integer")
    return int.from_bytes(value, "big", signed=True)


def oid(value: bytes) -> str:
    """Dotted text of an OBJECT IDENTIFIER's value."""
    if not value:
        raise Malformed("empty OID")
    parts = [*divmod(value[0], 40)] if value[0] < 80 else [2, value[0] - 80]
    number = 0
    for byte in value[1:]:
        number = (number << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(number)
            number = 0
    return ".".join(str(p) for p in parts)
