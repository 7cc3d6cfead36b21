"""nmap's ``<service>`` element for a detected service (``-sV``), written and read back.

Banners and certificates have no place in nmap's XML: a report read back keeps the
rest (name, product, version, extra info, tunnel, OS and device hints, CPEs).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

from portlib.model import DetectedService, DetectionMethod

# DetectedService field -> nmap's <service> attribute, in nmap's order after name
SERVICE_ATTRIBUTES = (
    ("product", "product"),
    ("version", "version"),
    ("extra_info", "extrainfo"),
    ("tunnel", "tunnel"),
    ("os_hint", "ostype"),
    ("device_hint", "devicetype"),
)


def service_element(found: DetectedService, quote: Callable[[object], str]) -> str:
    """``<service ...>`` with its CPEs as children; ``quote`` quotes attribute values."""
    attributes = "".join(
        f" {xml_name}={quote(value)}"
        for field, xml_name in SERVICE_ATTRIBUTES
        if (value := getattr(found, field))
    )
    head = (
        f"<service name={quote(found.name)}{attributes}"
        f" method={quote(found.method.value)} conf={quote(found.confidence)}"
    )
    if not found.cpe:
        return head + "/>"
    return head + ">" + "".join(f"<cpe>{_text(c)}</cpe>" for c in found.cpe) + "</service>"


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def detected_service(service: ET.Element, name: str, confidence: int) -> DetectedService:
    """A probed ``<service>`` element read back."""
    fields = {f: service.get(x) or None for f, x in SERVICE_ATTRIBUTES}
    return DetectedService(
        name=name,
        method=DetectionMethod.PROBED,
        confidence=confidence,
        product=fields["product"],
        version=fields["version"],
        extra_info=fields["extra_info"],
        tunnel=fields["tunnel"],
        os_hint=fields["os_hint"],
        device_hint=fields["device_hint"],
        cpe=tuple(c.text or "" for c in service.iterfind("cpe")),
    )
