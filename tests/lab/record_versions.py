"""Record what the lab's real daemons answer to portlib's probes, as test data.

Run inside the scanner namespace of a lab whose target runs ``tests.lab.daemons``
(``tests/test_versions_lab.py`` does it when PORTLIB_RECORD_VERSIONS names a
directory). Files are ``<daemon>.<probe>.bin``; the TLS certificate is ``<daemon>.der``.
"""

from __future__ import annotations

import socket
import ssl
import sys
import time
from pathlib import Path

from portlib.scanning.raw.templates import payloads_for
from portlib.scanning.versions.probes import snmp_v3_discovery, tcp_probes
from portlib.scanning.versions.rules import RULES
from portlib.scanning.versions.tls import client_context

# daemon key -> (port, probe names whose answers are kept); UDP ones by payload label
TCP_RECORDINGS: dict[str, tuple[int, tuple[str, ...]]] = {
    "sshd": (22, ("NULL",)),
    "nginx": (80, ("GetRequest",)),
    "vsftpd": (21, ("NULL",)),
    "exim": (25, ("NULL",)),
    "redis": (6379, ("RedisInfo",)),
    "postgres": (5432, ("PostgresStartup",)),
    "dnsmasq": (53, ("DNSVersionBind",)),
    "memcached": (11211, ("MemcachedVersion",)),
    "mosquitto": (1883, ("MQTTConnect",)),
    "dovecot-imap": (143, ("NULL",)),
    "dovecot-pop3": (110, ("NULL",)),
    "lighttpd": (8080, ("GetRequest",)),
    "slapd": (389, ("LDAPRootDSE",)),
}
UDP_RECORDINGS: dict[str, tuple[int, dict[str, bytes]]] = {}


def _read(sock: socket.socket | ssl.SSLSocket, wait: float = 1.0) -> bytes:
    sock.settimeout(wait)
    data = b""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and len(data) < 65536:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ssl.SSLError, OSError):
            break
        if not chunk:
            break
        data += chunk
    return data


def record(host: str, out: Path) -> list[str]:
    payload_of = {p.name: p.payload for p in tcp_probes()}
    written = []
    for key, (port, probes) in TCP_RECORDINGS.items():
        for probe in probes:
            with socket.create_connection((host, port), timeout=3) as sock:
                if payload_of[probe]:
                    sock.sendall(payload_of[probe])
                data = _read(sock)
                (out / f"{key}.{probe}.bin").write_bytes(data)
                written.append(f"{key}.{probe}")
                follow = next((r.follow_up for r in RULES if r.follow_up and r.pattern
                               and r.pattern.search(data)), None)  # fmt: skip
                if follow:
                    sock.sendall(follow)
                    (out / f"{key}.followup.bin").write_bytes(_read(sock))
    raw = socket.create_connection((host, 443), timeout=3)
    with client_context().wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True) or b""
        (out / "nginx-tls.der").write_bytes(der)
        tls.sendall(payload_of["GetRequest"])
        (out / "nginx-tls.GetRequest.bin").write_bytes(_read(tls))
    udp = {
        "dnsmasq-udp": (53, {"version-bind": payloads_for(53)[0]}),
        "snmpd": (161, {"get-v1": payloads_for(161)[0], "v3-discovery": snmp_v3_discovery()}),
        "ntpd": (123, {"client": payloads_for(123)[0]}),
    }
    for key, (port, payloads) in udp.items():
        for label, payload in payloads.items():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(2)
                sock.sendto(payload, (host, port))
                (out / f"{key}.{label}.bin").write_bytes(sock.recv(65536))
                written.append(f"{key}.{label}")
    return written


if __name__ == "__main__":
    print(record(sys.argv[1], Path(sys.argv[2])))
