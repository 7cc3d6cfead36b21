"""TLS for detection: a client context that verifies nothing and accepts old servers.

Detection wants to talk to whatever answers, so certificates are read, not judged.
"""

from __future__ import annotations

import ssl
from functools import cache

from portlib.model import Certificate
from portlib.scanning.versions.x509 import parse_certificate


@cache
def client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    try:
        context.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        context.set_ciphers("ALL")
    return context


def peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> Certificate | None:
    """The facts of the certificate the server sent, if it sent one this can read."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return parse_certificate(der) if der else None
