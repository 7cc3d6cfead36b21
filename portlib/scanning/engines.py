"""Which engine probes for each scan method: the one table the Scanner consults.

Engines are imported on first use, so scapy loads only for raw methods.
"""

from __future__ import annotations

from collections.abc import Callable

from portlib.model import ScanMethod
from portlib.scanning.contract import ScanEngine


def _connect_engine(method: ScanMethod) -> ScanEngine:
    from portlib.scanning.connect.engine import ConnectEngine

    return ConnectEngine(method)


def _raw_engine(method: ScanMethod) -> ScanEngine:
    from portlib.scanning.raw.engine import RawEngine

    return RawEngine(method)


# method -> the factory of its engine
ENGINES: dict[ScanMethod, Callable[[ScanMethod], ScanEngine]] = {
    ScanMethod.CONNECT: _connect_engine,
    ScanMethod.SYN: _raw_engine,
    ScanMethod.ACK: _raw_engine,
    ScanMethod.UDP: _raw_engine,
}
