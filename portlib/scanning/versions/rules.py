"""The match rules: which probe's answer a rule reads, and what it concludes. Pure data.

A rule is either a regular expression over the answer, whose named groups give the
fields (``product``, ``version``, ``extra``, ``os``), or a parser from ``parsers``.
Patterns are written from what the real daemons send (greetings recorded in
``tests/data/versions``) and from the protocols' specifications. Adding a service is
adding rows here (and a probe in ``probes`` if it does not greet).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from portlib.scanning.versions import parsers
from portlib.scanning.versions.found import Match

Shape = Callable[[dict[str, str]], dict[str, str]]


@dataclass(frozen=True, slots=True)
class Rule:
    """One matcher. ``probes`` empty: it reads the answer to any probe (greetings come
    whatever was sent). ``cpe`` may hold ``{version}``. ``follow_up`` is sent on the same
    connection after a match; ``enrich`` reads its answer into the match."""

    service: str
    probes: frozenset[str] = frozenset()
    pattern: re.Pattern[bytes] | None = None
    parse: Callable[[bytes], Match | None] | None = None
    product: str | None = None
    cpe: str | None = None
    os_hint: str | None = None
    shape: Shape | None = None
    certain: bool = True
    follow_up: bytes | None = None
    enrich: Callable[[Match, bytes], Match] | None = None

    def apply(self, data: bytes) -> Match | None:
        if self.parse is not None:
            return self.parse(data)
        assert self.pattern is not None
        found = self.pattern.search(data)
        if found is None:
            return None
        groups = {k: v.decode("latin-1").strip() for k, v in found.groupdict().items() if v}
        announced = groups.get("version")  # the CPE takes it before shaping
        if self.shape is not None:
            groups = self.shape(groups)
        version = groups.get("version")
        cpe: tuple[str, ...] = ()
        if self.cpe and ("{version}" not in self.cpe or announced):
            cpe = (self.cpe.format(version=announced),)
        return Match(
            self.service,
            groups.get("product", self.product),
            version,
            groups.get("extra"),
            os_hint=groups.get("os", self.os_hint),
            cpe=cpe,
            certain=self.certain,
        )


def _re(pattern: bytes) -> re.Pattern[bytes]:
    return re.compile(pattern, re.DOTALL)


def _openssh(groups: dict[str, str]) -> dict[str, str]:
    # "9.2p1" and "Debian-2+deb12u10" -> "9.2p1 Debian 2+deb12u10": the comment names
    # the distribution's package revision.
    comment = groups.get("comment", "")
    out = dict(groups, extra=f"protocol {groups['protocol']}")
    if comment:
        out["version"] = f"{groups['version']} {comment.replace('-', ' ', 1)}"
        if comment.split("-")[0].lower() in ("debian", "ubuntu", "raspbian"):
            out["os"] = "Linux"
    return out


def _ssh_protocol(groups: dict[str, str]) -> dict[str, str]:
    return dict(groups, extra=f"protocol {groups['protocol']}")


def _vnc(groups: dict[str, str]) -> dict[str, str]:
    return {"extra": f"protocol {int(groups['major'])}.{int(groups['minor'])}"}


def _starttls(match: Match, answer: bytes) -> Match:
    """An EHLO answer: note STARTTLS when the server offers it."""
    if re.search(rb"^250[ -]STARTTLS\r?$", answer, re.MULTILINE | re.IGNORECASE):
        return match.with_extra("STARTTLS")
    return match


_EHLO = b"EHLO portlib.invalid\r\n"


def _smtp(pattern: bytes, product: str | None, cpe: str | None) -> Rule:
    """An SMTP greeting rule; without a product it only names the service."""
    return Rule(
        "smtp",
        pattern=_re(pattern),
        product=product,
        cpe=cpe,
        follow_up=_EHLO,
        enrich=_starttls,
        certain=product is not None,
    )


RULES: tuple[Rule, ...] = (
    # SSH (RFC 4253 4.2): SSH-protoversion-softwareversion SP comments CR LF
    Rule(
        "ssh",
        pattern=_re(
            rb"^SSH-(?P<protocol>[\d.]+)-OpenSSH_(?P<version>[^\s\r\n]+)"
            rb"(?: (?P<comment>[^\r\n]+))?\r?\n"
        ),
        product="OpenSSH",
        cpe="cpe:/a:openbsd:openssh:{version}",
        shape=_openssh,
    ),
    Rule(
        "ssh",
        pattern=_re(rb"^SSH-(?P<protocol>[\d.]+)-dropbear_(?P<version>[\w.]+)\r?\n"),
        product="Dropbear sshd",
        cpe="cpe:/a:matt_johnston:dropbear_ssh_server:{version}",
        shape=_ssh_protocol,
    ),
    Rule(
        "ssh",
        pattern=_re(rb"^SSH-(?P<protocol>[\d.]+)-(?P<product>[^\s\r\n_]+)"),
        shape=_ssh_protocol,
        certain=False,
    ),
    # FTP (RFC 959 greeting 220; vsftpd refuses with 500 OOPS when it cannot serve)
    Rule(
        "ftp",
        pattern=_re(rb"^220 \(vsFTPd (?P<version>[\d.]+)\)"),
        product="vsftpd",
        cpe="cpe:/a:vsftpd:vsftpd:{version}",
    ),
    Rule(
        "ftp",
        pattern=_re(rb"^500 OOPS: (?:vsftpd: )?(?P<extra>[^\r\n]+)"),
        product="vsftpd",
        cpe="cpe:/a:vsftpd:vsftpd",
    ),
    Rule(
        "ftp",
        pattern=_re(rb"^220 ProFTPD (?P<version>\d[\w.]+) Server"),
        product="ProFTPD",
        cpe="cpe:/a:proftpd:proftpd:{version}",
    ),
    Rule(
        "ftp", pattern=_re(rb"^220 ProFTPD Server"), product="ProFTPD", cpe="cpe:/a:proftpd:proftpd"
    ),
    Rule(
        "ftp",
        pattern=_re(rb"^220-+ Welcome to Pure-FTPd"),
        product="Pure-FTPd",
        cpe="cpe:/a:pureftpd:pure-ftpd",
    ),
    Rule("ftp", pattern=_re(rb"^220[ -][^\r\n]*FTP"), certain=False),
    # SMTP (RFC 5321 greeting), then EHLO to see whether STARTTLS is offered
    _smtp(rb"^220 \S+ ESMTP Exim (?P<version>[\d.]+)", "Exim smtpd", "cpe:/a:exim:exim:{version}"),
    _smtp(rb"^220 \S+ ESMTP Postfix", "Postfix smtpd", "cpe:/a:postfix:postfix"),
    _smtp(rb"^220 \S+ ESMTP OpenSMTPD", "OpenSMTPD", "cpe:/a:openbsd:opensmtpd"),
    _smtp(rb"^220[ -][^\r\n]*SMTP", None, None),
    # IMAP (RFC 9051 greeting) and POP3 (RFC 1939)
    Rule(
        "imap",
        pattern=_re(rb"^\* OK [^\r\n]*Dovecot"),
        product="Dovecot imapd",
        cpe="cpe:/a:dovecot:dovecot",
    ),
    Rule("imap", pattern=_re(rb"^\* OK [^\r\n]*IMAP"), certain=False),
    Rule(
        "pop3",
        pattern=_re(rb"^\+OK [^\r\n]*Dovecot"),
        product="Dovecot pop3d",
        cpe="cpe:/a:dovecot:dovecot",
    ),
    Rule("pop3", pattern=_re(rb"^\+OK "), certain=False),
    # VNC (RFC 6143 7.1.1) and telnet option negotiation (RFC 854: IAC WILL/WONT/DO/DONT)
    Rule(
        "vnc", pattern=_re(rb"^RFB (?P<major>\d{3})\.(?P<minor>\d{3})\n"), product="VNC", shape=_vnc
    ),
    Rule("telnet", pattern=_re(rb"^\xff[\xfb-\xfe]")),
    # MySQL/MariaDB greet first
    Rule("mysql", parse=parsers.parse_mysql),
    # answers to probes
    Rule("http", frozenset({"GetRequest", "GenericLines"}), parse=parsers.parse_http),
    Rule("redis", frozenset({"RedisInfo"}), parse=parsers.parse_redis),
    Rule(
        "memcached",
        frozenset({"MemcachedVersion"}),
        pattern=_re(rb"^VERSION (?P<version>\d[\w.]*)\r\n"),
        product="Memcached",
        cpe="cpe:/a:memcached:memcached:{version}",
    ),
    Rule("postgresql", frozenset({"PostgresStartup"}), parse=parsers.parse_postgres),
    Rule("domain", frozenset({"DNSVersionBind"}), parse=parsers.dns_tcp_answer),
    Rule("mqtt", frozenset({"MQTTConnect"}), parse=parsers.parse_mqtt),
    Rule("ldap", frozenset({"LDAPRootDSE"}), parse=parsers.parse_ldap),
    Rule("ms-wbt-server", frozenset({"RDPNegotiation"}), parse=parsers.parse_rdp),
    Rule("microsoft-ds", frozenset({"SMB2Negotiate"}), parse=parsers.parse_smb),
    # a TLS record (handshake or alert) where plain text was expected: try TLS next
    Rule("ssl", pattern=_re(rb"^[\x15\x16]\x03[\x00-\x04]"), certain=False),
)

# UDP: every answer is read by each of these (a service on an unusual port answers
# the payload of its standard one); the ports whose payloads are tried.
UDP_PARSERS: tuple[Callable[[bytes], Match | None], ...] = (
    parsers.dns_txt_answer,
    parsers.parse_ntp,
    parsers.parse_snmp,
)
UDP_PAYLOAD_PORTS: tuple[int, ...] = (53, 123, 161)
