"""Service matchers on what real daemons sent (tests/data/versions), on answers built
from the protocols' specs, and on random bytes (never an exception)."""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portlib.scanning.versions.found import Match
from portlib.scanning.versions.match import identify, identify_udp, matching_rule, printable
from portlib.scanning.versions.probes import NULL, TLS, probe_order, tcp_probes
from portlib.scanning.versions.rules import RULES
from portlib.scanning.versions.session import worth_trying
from portlib.scanning.versions.x509 import parse_certificate

DATA = Path(__file__).parent / "data" / "versions"

# recording -> (probe, name, product, version); recorded from the Debian 12 daemons the
# lab runs (tests/lab/record_versions.py)
RECORDED: dict[str, tuple[str, str, str | None, str | None]] = {
    "sshd.NULL": (NULL, "ssh", "OpenSSH", "9.2p1 Debian 2+deb12u10"),
    "nginx.GetRequest": ("GetRequest", "http", "nginx", "1.22.1"),
    "nginx-tls.GetRequest": ("GetRequest", "http", "nginx", "1.22.1"),
    "vsftpd.NULL": (NULL, "ftp", "vsftpd", None),
    "exim.NULL": (NULL, "smtp", "Exim smtpd", "4.96"),
    "redis.RedisInfo": ("RedisInfo", "redis", "Redis key-value store", "7.0.15"),
    "postgres.PostgresStartup": ("PostgresStartup", "postgresql", "PostgreSQL DB", None),
    "dnsmasq.DNSVersionBind": ("DNSVersionBind", "domain", "dnsmasq", "2.90"),
    "memcached.MemcachedVersion": ("MemcachedVersion", "memcached", "Memcached", "1.6.18"),
    "mosquitto.MQTTConnect": ("MQTTConnect", "mqtt", "Mosquitto", "2.0.11"),
    "dovecot-imap.NULL": (NULL, "imap", "Dovecot imapd", None),
    "dovecot-pop3.NULL": (NULL, "pop3", "Dovecot pop3d", None),
    "lighttpd.GetRequest": ("GetRequest", "http", "lighttpd", "1.4.69"),
    "slapd.LDAPRootDSE": ("LDAPRootDSE", "ldap", "OpenLDAP", None),
}
RECORDED_UDP: dict[str, tuple[str, str | None, str | None, bool]] = {
    "dnsmasq-udp.version-bind": ("domain", "dnsmasq", "2.90", True),
    "ntpd.client": ("ntp", "NTP", "v4", True),
    "snmpd.get-v1": ("snmp", None, None, False),
    "snmpd.v3-discovery": ("snmp", "net-snmp", None, True),
}


@pytest.mark.parametrize("recording", sorted(RECORDED))
def test_recorded_greetings_match(recording: str) -> None:
    probe, name, product, version = RECORDED[recording]
    found = identify(probe, (DATA / f"{recording}.bin").read_bytes())
    assert found is not None and found.certain
    assert (found.name, found.product, found.version) == (name, product, version)


@pytest.mark.parametrize("recording", sorted(RECORDED_UDP))
def test_recorded_udp_answers_match(recording: str) -> None:
    name, product, version, certain = RECORDED_UDP[recording]
    found = identify_udp((DATA / f"{recording}.bin").read_bytes())
    assert found is not None
    assert (found.name, found.product, found.version, found.certain) == (
        name,
        product,
        version,
        certain,
    )


def test_recorded_details() -> None:
    ssh = identify(NULL, (DATA / "sshd.NULL.bin").read_bytes())
    assert ssh is not None
    assert (ssh.extra_info, ssh.os_hint, ssh.cpe) == (
        "protocol 2.0",
        "Linux",
        ("cpe:/a:openbsd:openssh:9.2p1",),
    )
    ntp = identify_udp((DATA / "ntpd.client.bin").read_bytes())
    assert ntp is not None and ntp.extra_info == "unsynchronized"
    snmp = identify_udp((DATA / "snmpd.get-v1.bin").read_bytes())
    assert snmp is not None and snmp.os_hint == "Linux"
    assert snmp.extra_info is not None and "community public" in snmp.extra_info
    ftp = identify(NULL, (DATA / "vsftpd.NULL.bin").read_bytes())
    assert ftp is not None and ftp.extra_info == "both local and anonymous access disabled!"


def test_smtp_follow_up_notes_starttls() -> None:
    from portlib.scanning.versions.match import enrich

    greeting = (DATA / "exim.NULL.bin").read_bytes()
    found = matching_rule(NULL, greeting)
    assert found is not None
    rule, match = found
    assert rule.follow_up == b"EHLO portlib.invalid\r\n"
    enriched = enrich(rule, match, (DATA / "exim.followup.bin").read_bytes())
    assert enriched.extra_info == "STARTTLS"
    assert enrich(rule, match, b"250 mail.lab.example Hello\r\n").extra_info is None


def test_recorded_certificate() -> None:
    cert = parse_certificate((DATA / "nginx-tls.der").read_bytes())
    assert cert is not None
    assert cert.subject == "CN=lab.example,O=portlib lab"
    assert cert.issuer == cert.subject and cert.self_signed
    assert cert.alt_names == ("lab.example", "www.lab.example", "192.0.2.10")
    assert cert.not_before is not None and cert.not_after is not None
    assert cert.not_after - cert.not_before == dt.timedelta(days=30)
    assert cert.not_after.tzinfo is dt.UTC


# answers built from the protocols' specs, for services the lab does not run
def _mysql_greeting(version: bytes) -> bytes:
    body = b"\x0a" + version + b"\x00" + struct.pack("<I", 7) + b"abcdefgh\x00" + b"\x00" * 20
    return len(body).to_bytes(3, "little") + b"\x00" + body


SPEC_ANSWERS: list[tuple[str, bytes, str, str | None, str | None]] = [
    (NULL, b"SSH-2.0-dropbear_2022.83\r\n", "ssh", "Dropbear sshd", "2022.83"),
    (NULL, b"220 (vsFTPd 3.0.3)\r\n", "ftp", "vsftpd", "3.0.3"),
    (NULL, b"220 ProFTPD 1.3.5 Server (Debian) [::ffff:1.2.3.4]\r\n", "ftp", "ProFTPD", "1.3.5"),
    (
        NULL,
        b"220---------- Welcome to Pure-FTPd [privsep] ----------\r\n",
        "ftp",
        "Pure-FTPd",
        None,
    ),
    (NULL, b"220 mx.example ESMTP Postfix (Debian/GNU)\r\n", "smtp", "Postfix smtpd", None),
    (NULL, b"220 mx.example ESMTP OpenSMTPD\r\n", "smtp", "OpenSMTPD", None),
    (NULL, b"RFB 003.008\n", "vnc", "VNC", None),
    (NULL, b"\xff\xfd\x18\xff\xfd\x20", "telnet", None, None),
    (NULL, _mysql_greeting(b"8.0.36"), "mysql", "MySQL", "8.0.36"),
    (
        NULL,
        _mysql_greeting(b"5.5.5-10.11.6-MariaDB-0+deb12u1"),
        "mysql",
        "MariaDB",
        "10.11.6-MariaDB-0+deb12u1",
    ),
    (
        "GetRequest",
        b"HTTP/1.1 200 OK\r\nServer: Apache/2.4.57 (Debian)\r\n\r\n",
        "http",
        "Apache httpd",
        "2.4.57",
    ),
    (
        "GetRequest",
        b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.2\r\n\r\n",
        "http",
        "SimpleHTTPServer",
        "0.6",
    ),
    ("RedisInfo", b"-NOAUTH Authentication required.\r\n", "redis", "Redis key-value store", None),
    (
        "RDPNegotiation",
        b"\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00\x02\x00\x08\x00\x02\x00\x00\x00",
        "ms-wbt-server",
        None,
        None,
    ),
]


@pytest.mark.parametrize(("probe", "answer", "name", "product", "version"), SPEC_ANSWERS)
def test_spec_answers_match(
    probe: str, answer: bytes, name: str, product: str | None, version: str | None
) -> None:
    found = identify(probe, answer)
    assert found is not None and found.certain
    assert (found.name, found.product, found.version) == (name, product, version)


def test_http_details() -> None:
    python = identify(
        "GetRequest",
        b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.2\r\n\r\n<title>Dir</title>",
    )
    assert python is not None and python.extra_info == "Python 3.11.2; title: Dir"
    apache = identify("GetRequest", b"HTTP/1.1 200 OK\r\nServer: Apache/2.4.57 (Debian)\r\n\r\n")
    assert apache is not None and (apache.extra_info, apache.os_hint) == ("(Debian)", "Linux")
    plain_to_tls = identify(
        "GetRequest",
        b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n\r\n"
        b"<center>The plain HTTP request was sent to HTTPS port</center>",
    )
    assert plain_to_tls == Match("ssl", certain=False)


def test_smb_negotiate_response() -> None:
    header = b"\xfeSMB" + b"\x00" * 60
    body = struct.pack("<HHH", 65, 1, 0x0311) + b"\x00" * 58
    message = header + body
    found = identify("SMB2Negotiate", struct.pack("!I", len(message)) + message)
    assert found == Match("microsoft-ds", extra_info="SMB dialect 3.11")


def test_unknown_bytes_are_unknown() -> None:
    assert identify(NULL, b"") is None
    assert identify(NULL, b"hello there\r\n") is None
    assert identify("PostgresStartup", b"E\xff\xff\xff\xffjunk") is None
    assert identify_udp(b"\x00" * 47) is None


def test_tls_record_where_plain_text_was_expected_asks_for_tls() -> None:
    found = identify("GetRequest", b"\x15\x03\x03\x00\x02\x02\x46")
    assert found == Match("ssl", certain=False)


def test_probe_order_puts_the_port_s_probes_first_and_honours_intensity() -> None:
    probes = tcp_probes()
    names = [p.name for p in probe_order(probes, 6379, 1)]
    assert names == ["RedisInfo"] + [p.name for p in probes if p.rarity <= 1 and p.name != NULL]
    assert [p.name for p in probe_order(probes, 443, 0)][:2] == [TLS, "GetRequest"]
    everything = [p.name for p in probe_order(probes, 40000, 9)]
    assert everything[0] == "GetRequest" and set(everything) == {p.name for p in probes} - {NULL}
    assert probe_order(probes, 9100, 9) == []  # printers print what they receive


def test_soft_matches_only_try_probes_that_can_say_more() -> None:
    by_name = {p.name: p for p in tcp_probes()}
    assert worth_trying(by_name[TLS], Match("ssl", certain=False))
    assert not worth_trying(by_name["GetRequest"], Match("ssl", certain=False))
    assert worth_trying(by_name["MQTTConnect"], Match("mqtt", certain=False))
    assert not worth_trying(by_name["RedisInfo"], Match("mqtt", certain=False))


def test_every_rule_names_existing_probes() -> None:
    names = {p.name for p in tcp_probes()}
    for rule in RULES:
        assert rule.probes <= names, rule
        assert (rule.pattern is None) != (rule.parse is None), rule


_PROBE_NAMES = st.sampled_from([p.name for p in tcp_probes()] + [""])
_PREFIXES = st.sampled_from(
    [b"", b"HTTP/1.1 200 OK\r\n", b"SSH-2.0-", b"E", b"0", b"\x30\x82", b"$12\r\n", b"\x20\x02",
     b"\x00\x00\x00\x40\xfeSMB", b"\x03\x00\x00\x0b\x06\xd0", b"\x84\x80\x00\x01"]
)  # fmt: skip


@given(_PROBE_NAMES, _PREFIXES, st.binary(max_size=300))
def test_any_bytes_match_or_are_unknown(probe: str, prefix: bytes, tail: bytes) -> None:
    data = prefix + tail
    found = identify(probe, data)
    assert found is None or isinstance(found, Match)
    udp = identify_udp(data)
    assert udp is None or isinstance(udp, Match)
    assert "\n" not in printable(data)


@given(st.binary(max_size=400))
def test_any_bytes_are_a_certificate_or_none(data: bytes) -> None:
    der = (DATA / "nginx-tls.der").read_bytes()
    assert parse_certificate(data) is None or data
    cut = der[: len(data) % len(der)] + data
    result = parse_certificate(cut)
    assert result is None or result.subject is not None
