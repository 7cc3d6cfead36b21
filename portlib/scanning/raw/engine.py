"""The raw-socket engine: stateless SYN, ACK and UDP probing over IPv4 and IPv6.

Per probe the engine only patches a template and sends it; replies are read
from one filtered packet socket and proven ours by the keyed cookie, so the
engine keeps per-probe columns (tries, send times, decided flags) rather than
a table of probe objects. Each run is a ``RawScan``; see ``portlib.scanning.raw``
for the modules it is made of.
"""

from __future__ import annotations

from portlib.errors import ScanError
from portlib.model import IPAddress, ScanMethod
from portlib.scanning.contract import Emit, ScanWork
from portlib.scanning.raw.scan import DEFAULT_TUNING, RawScan, RawTuning
from portlib.scanning.raw.wire import Probe

KINDS: dict[ScanMethod, Probe] = {
    ScanMethod.SYN: Probe.SYN,
    ScanMethod.ACK: Probe.ACK,
    ScanMethod.UDP: Probe.UDP,
}


class RawEngine:
    """Stateless raw probing for ``syn``, ``ack`` and ``udp`` (needs CAP_NET_RAW).

    ``tuning`` turns off kernel facilities (rings, send workers) to take the
    plainer paths; the default uses whatever the kernel offers.
    """

    def __init__(self, method: ScanMethod | str, *, tuning: RawTuning = DEFAULT_TUNING):
        try:
            self.method = ScanMethod(method)
            self.kind = KINDS[self.method]
        except (ValueError, KeyError):
            raise ScanError(f"the raw engine does syn, ack and udp scans, not {method!r}") from None
        self.tuning = tuning
        self.probes_sent = 0
        self.receive_drops = 0
        # Hosts seen rate-limiting ICMP errors -> seconds per token (an upper bound).
        self.icmp_intervals: dict[IPAddress, float] = {}

    async def run(self, work: ScanWork, emit: Emit) -> None:
        scan = RawScan(self.kind, work, self.tuning)
        try:
            await scan.run(emit)
        finally:
            scan.close()
            self.probes_sent += scan.sent
            self.receive_drops += scan.rx_drops
            for host in scan.hosts:
                if host.limit is not None and host.limit.limited:
                    self.icmp_intervals[host.address] = host.limit.interval
