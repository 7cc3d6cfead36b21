"""``portlib service HOST:PORT``: detect the service on one port (nmap's ``-sV`` for one).

``free_cmd.run_service`` hands a query that names an endpoint here; names and bare
port numbers stay registry look-ups.
"""

from __future__ import annotations

import argparse
import re
import sys

from portlib.model import DetectedService, PortResult

# HOST:PORT[/PROTO], HOST an IPv4 address, a bracketed IPv6 address, or a name
_ENDPOINT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:/\[\]]+)):(?P<port>\d+)"
                       r"(?:/(?P<proto>[A-Za-z]+))?$")  # fmt: skip


def endpoint_query(text: str) -> tuple[str, str, str | None] | None:
    """(host, port text, protocol text) when ``text`` is HOST:PORT[/PROTO], else None."""
    found = _ENDPOINT.match(text.strip())
    if found is None:
        return None
    return found.group("v6") or found.group("host"), found.group("port"), found.group("proto")


def run_detect(args: argparse.Namespace, endpoint: tuple[str, str, str | None]) -> int:
    from portlib.output.jsonout import dumps
    from portlib.scanning.versions import detect_services
    from portlib.services import as_protocol, check_port
    from portlib.targets import parse_targets

    host_text, port_text, proto_text = endpoint
    protocol = as_protocol(proto_text or args.protocol or "tcp")
    port = check_port(int(port_text), lowest=1)
    addresses = [t.address for t in parse_targets(host_text)]
    results = detect_services(
        [(address, port, protocol) for address in addresses[:1]],
        intensity=args.version_intensity,
        host_timeout=args.host_timeout,
    )
    if args.json:
        print(dumps(list(results)))
    else:
        sys.stdout.write(render(results))
    return 0


def render(results: tuple[PortResult, ...]) -> str:
    """nmap's port table with the VERSION column, then the details a port's detection found."""
    rows = [("PORT", "STATE", "SERVICE", "VERSION")]
    details: list[str] = []
    for r in results:
        found = r.detected
        rows.append(
            (f"{r.port}/{r.protocol}", str(r.state), _service_word(found, r), _version(found))
        )
        if found is not None:
            details += _details(found)
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    table = "".join(
        f"{a:<{widths[0]}} {b:<{widths[1]}} {c:<{widths[2]}} {d}".rstrip() + "\n"
        for a, b, c, d in rows
    )
    return table + "".join(f"| {line}\n" for line in details)


def _service_word(found: DetectedService | None, result: PortResult) -> str:
    return found.service_text() if found is not None else result.service or "unknown"


def _version(found: DetectedService | None) -> str:
    return found.version_text() if found is not None else ""


def _details(found: DetectedService) -> list[str]:
    from portlib.scanning.versions.match import printable

    lines = []
    if found.os_hint or found.device_hint:
        lines.append("os: " + " ".join(h for h in (found.os_hint, found.device_hint) if h))
    lines += [f"cpe: {cpe}" for cpe in found.cpe]
    cert = found.certificate
    if cert is not None:
        lines.append(f"tls subject: {cert.subject}")
        lines.append(f"tls issuer: {cert.issuer}" + (" (self-signed)" if cert.self_signed else ""))
        if cert.alt_names:
            lines.append("tls alt names: " + ", ".join(cert.alt_names))
        if cert.not_after is not None:
            lines.append(f"tls expires: {cert.not_after:%Y-%m-%d %H:%M:%S} UTC")
    if found.banner and found.method != "probed":
        lines.append(f"banner: {printable(found.banner)}")
    return lines
