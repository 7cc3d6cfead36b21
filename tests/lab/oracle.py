"""nmap -sV as an oracle for service detection: run it, read its XML, compare.

Only nmap's output is read (its XML report); nothing of nmap's data files.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from portlib.model import DetectedService, PortResult


def nmap_argv(hosts: str | Sequence[str], protocol: str, ports: Sequence[int]) -> list[str]:
    """``nmap -sV`` on ``ports`` of ``hosts``, XML on stdout."""
    kind = ["-sU"] if protocol == "udp" else ["-sS"]
    spec = ",".join(map(str, ports))
    targets = [hosts] if isinstance(hosts, str) else list(hosts)
    return ["nmap", *kind, "-sV", "-Pn", "-n", "-p", spec, "-oX", "-", *targets]


def nmap_services_by_host(xml_text: str) -> dict[tuple[str, int, str], dict[str, str]]:
    """(address, port, protocol) -> the attributes of nmap's <service> element."""
    found = {}
    for host in ET.fromstring(xml_text).iter("host"):
        address = host.find("address")
        addr = address.get("addr", "") if address is not None else ""
        for port in host.iter("port"):
            service = port.find("service")
            key = (addr, int(port.get("portid", "0")), port.get("protocol", ""))
            found[key] = dict(service.attrib) if service is not None else {}
    return found


def nmap_services(xml_text: str) -> dict[tuple[int, str], dict[str, str]]:
    """(port, protocol) -> nmap's <service> attributes, for a scan of one host."""
    return {(port, proto): s for (_, port, proto), s in nmap_services_by_host(xml_text).items()}


def _announced(version: str) -> bool:
    """A version the server said, not one nmap inferred from a fingerprint."""
    return not any(word in version for word in ("or later", " - ", ".X"))


def disagreements(ours: PortResult, theirs: dict[str, str]) -> list[str]:
    """Where portlib's answer differs from nmap's, on what nmap itself is sure of."""
    found = ours.detected
    where = f"{ours.port}/{ours.protocol}"
    if found is None:
        return (
            [f"{where}: nothing detected, nmap {theirs}"]
            if theirs.get("method") == "probed"
            else []
        )
    out = []
    name = theirs.get("name", "")
    if theirs.get("method") == "probed" and " " not in name and found.name != name:
        out.append(f"{where}: name {found.name!r}, nmap {name!r}")
    product = theirs.get("product")
    if product and (found.product is None or found.product.lower() not in product.lower()):
        out.append(f"{where}: product {found.product!r}, nmap {product!r}")
    version = theirs.get("version")
    if version and _announced(version) and found.version != version:
        out.append(f"{where}: version {found.version!r}, nmap {version!r}")
    if theirs.get("tunnel") != found.tunnel and theirs.get("method") == "probed":
        out.append(f"{where}: tunnel {found.tunnel!r}, nmap {theirs.get('tunnel')!r}")
    return out


def answer_text(found: DetectedService | None) -> str:
    """One cell of a side-by-side table: [tunnel/]name product version."""
    if found is None:
        return "-"
    name = f"{found.tunnel}/{found.name}" if found.tunnel else found.name
    return " ".join(x for x in (name, found.product, found.version) if x)


def nmap_answer_text(service: dict[str, str]) -> str:
    """The same cell for nmap's <service> attributes."""
    if not service:
        return "-"
    name = service.get("name", "?")
    if service.get("tunnel"):
        name = f"{service['tunnel']}/{name}"
    if service.get("method") == "table":
        name += "?"
    return " ".join(x for x in (name, service.get("product"), service.get("version")) if x)
