"""Where the engines' verdicts go: deduplicated, named, counted, kept, and streamed.

A ``Tally`` is one scan's record: the verdicts of the host group in progress,
the progress counts of the whole scan and the hosts whose verdicts are dropped
(a sharded scan probes hosts its discovery found down). Each engine run gets
an ``Emitter`` from it: the ``emit`` callable of the engine contract, with a
``many`` form for batches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from portlib.model import IPAddress, PortResult
from portlib.scanning.channel import Channel
from portlib.scanning.options import ProgressCallback


class Tally:
    """The verdicts of the current host group and the scan's progress (``done`` of ``total``)."""

    __slots__ = ("done", "dropped", "emitters", "on_progress", "results", "total")

    def __init__(self, on_progress: ProgressCallback | None) -> None:
        self.results: list[PortResult] = []
        self.done = 0
        self.total = 0  # known once discovery has ended
        self.dropped: frozenset[IPAddress] = frozenset()
        self.on_progress = on_progress
        self.emitters: list[Emitter] = []

    def start_group(self, dropped: frozenset[IPAddress]) -> None:
        """A new host group: its own verdicts and emitters; progress runs on."""
        self.results = []
        self.emitters = []
        self.dropped = dropped

    def report_progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)

    def emitter(self, names: Mapping[int, str], channel: Channel[PortResult]) -> Emitter:
        """The ``emit`` for one engine run; ``names`` maps ports to registry names."""
        emitter = Emitter(self, names, channel)
        self.emitters.append(emitter)
        return emitter

    def decided_on(self, host: IPAddress) -> int:
        """How many of ``host``'s ports (all protocols) have a verdict so far."""
        return sum(emitter.decided_on(host) for emitter in self.emitters)


class Emitter:
    """One engine run's ``emit``: called per verdict, or ``many`` per batch.

    Per verdict cost matters on a 65535-port scan, so the hot path keeps its
    state in locals (the registry's port->name mapping, no enum hashing), and
    keeps the engine's result object when there is no name to add. Every
    verdict of a batch is recorded before the hand-over may wait, so a scan
    cancelled there still reports them.
    """

    __slots__ = ("_channel", "_names", "_seen", "_seen_by_id", "_tally")

    def __init__(self, tally: Tally, names: Mapping[int, str], channel: Channel[PortResult]):
        self._tally = tally
        self._names = names
        self._channel = channel
        # Ports decided so far, per host. The host's set is found by the address
        # object's identity first: engines pass the same object for every port
        # of a host, and hashing an ip_address runs Python code per call.
        self._seen: dict[IPAddress, set[int]] = {}
        self._seen_by_id: dict[int, tuple[IPAddress, set[int]]] = {}

    async def __call__(self, result: PortResult) -> None:
        await self.many((result,))

    def decided_on(self, host: IPAddress) -> int:
        return len(self._seen.get(host, ()))

    async def many(self, batch: Sequence[PortResult]) -> None:
        tally = self._tally
        names = self._names
        seen = self._seen
        seen_by_id = self._seen_by_id
        dropped = tally.dropped
        progress = tally.on_progress
        record = tally.results.append
        put = self._channel.put
        room = True
        for result in batch:
            host = result.host
            entry = seen_by_id.get(id(host))
            if entry is None or entry[0] is not host:
                entry = (host, seen.setdefault(host, set()))
                seen_by_id[id(host)] = entry  # the tuple keeps ``host`` (and its id) alive
            ports = entry[1]
            before = len(ports)
            ports.add(result.port)
            if len(ports) == before:
                continue  # an engine's late duplicate: each (host, port) is decided once
            tally.done += 1
            if progress is not None:
                progress(tally.done, tally.total)
            if dropped and host in dropped:
                continue
            if result.service is None:
                name = names.get(result.port)
                if name is not None:  # most of a -p- scan has no name: keep the object
                    result = PortResult(
                        host,
                        result.port,
                        result.protocol,
                        result.state,
                        result.reason,
                        result.rtt,
                        name,
                    )
            record(result)
            room = put(result) and room
        if not room:
            await self._channel.wait_for_room()  # backpressure: the consumer is behind
