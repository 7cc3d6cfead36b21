"""Service and version detection (nmap's ``-sV``) with portlib's own probes and rules.

``probes`` (what is sent) and ``rules`` (what answers mean) are tables; ``match`` and
``parsers`` are pure; ``session`` (TCP, TLS) and ``udp`` move the bytes; ``detect`` runs
many services at once and is the public entry point.
"""

from __future__ import annotations

from portlib.scanning.versions.detect import (
    DetectionOptions,
    detect_services,
    detect_services_async,
)

__all__ = ["DetectionOptions", "detect_services", "detect_services_async"]
