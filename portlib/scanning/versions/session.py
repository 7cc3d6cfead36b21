"""One service's detection over TCP: the NULL probe, then the ordered probes, TLS inside.

Every connection reads at most the service's byte budget, every wait follows the RTT
(``Waits``), and what is known so far lives in ``Progress`` so that a host timeout
still gets the best verdict reached.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

from portlib.model import Certificate, DetectedService, DetectionMethod, IPAddress
from portlib.scanning.versions import tls
from portlib.scanning.versions.found import Match
from portlib.scanning.versions.match import enrich, matching_rule
from portlib.scanning.versions.probes import NULL, TLS, Probe
from portlib.scanning.versions.rules import RULES, Rule

READ_CAP = 64 * 1024  # bytes read from one service, all its connections together
BANNER_CAP = 512  # bytes of the first answer kept in the result
CONF_CERTAIN, CONF_SOFT, CONF_TABLE = 10, 8, 3

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True, slots=True)
class Waits:
    """How long to wait, derived from the round-trip time instead of fixed seconds:
    a greeting or an answer gets a fixed allowance for the server's own work plus a
    few RTTs; after the first bytes, ``idle`` of silence ends the answer."""

    greeting: float
    answer: float
    idle: float
    connect: float

    @classmethod
    def for_rtt(cls, rtt: float, *, slack: float = 0.5) -> Waits:
        rtt = max(0.0, rtt)
        return cls(
            greeting=min(slack + 4 * rtt, 6.0),
            answer=min(slack + 4 * rtt, 6.0),
            idle=min(0.05 + 2 * rtt, 1.0),
            connect=min(1.0 + 10 * rtt, 10.0),
        )


@dataclass(slots=True)
class Progress:
    """What one service's detection has learnt so far (mutable, for the host timeout)."""

    registry_name: str | None
    banner: bytes = b""
    budget: int = READ_CAP
    soft: Match | None = None
    tunnel: str | None = None
    certificate: Certificate | None = None
    answered: bool = False  # some probe got bytes
    closed_at_once: bool = False
    notes: list[str] = field(default_factory=list)

    def heard(self, data: bytes) -> None:
        if data:
            self.answered = True
            if not self.banner:
                self.banner = data[:BANNER_CAP]

    def result(self, match: Match, confidence: int) -> DetectedService:
        return DetectedService(
            name=match.name,
            method=DetectionMethod.PROBED,
            confidence=confidence,
            product=match.product,
            version=match.version,
            extra_info=match.extra_info,
            os_hint=match.os_hint,
            device_hint=match.device_hint,
            tunnel=self.tunnel,
            cpe=match.cpe,
            banner=self.banner,
            certificate=self.certificate,
        )

    def verdict(self) -> DetectedService:
        """The best answer without a certain match: soft match, tcpwrapped, or the registry."""
        if self.soft is not None:
            return self.result(self.soft, CONF_SOFT)
        if self.tunnel == "ssl":
            return self.result(Match("ssl"), CONF_SOFT)
        if self.closed_at_once and not self.answered:
            return self.result(Match("tcpwrapped"), CONF_SOFT)
        return DetectedService(
            name=self.registry_name or "unknown",
            method=DetectionMethod.TABLE,
            confidence=CONF_TABLE,
            banner=self.banner,
        )


def worth_trying(probe: Probe, soft: Match | None) -> bool:
    """After a soft match only the probes that can say more about that service run."""
    if soft is None:
        return True
    if soft.name == "ssl":
        return probe.name == TLS
    return any(r.service == soft.name and probe.name in r.probes for r in RULES)


def _abort(stream: Stream) -> None:
    stream[1].transport.abort()


class TcpSession:
    """Detection of one TCP service; ``run()`` returns the verdict (None: not open)."""

    def __init__(
        self,
        host: IPAddress,
        port: int,
        probes: list[Probe],
        waits: Waits,
        progress: Progress,
    ):
        self.host = host
        self.port = port
        self.probes = probes
        self.waits = waits
        self.progress = progress

    async def open(self, context: ssl.SSLContext | None) -> Stream:
        connect = asyncio.open_connection(
            str(self.host),
            self.port,
            ssl=context,
            server_hostname="" if context is not None else None,
            ssl_handshake_timeout=self.waits.connect + self.waits.answer if context else None,
            limit=READ_CAP,
        )
        return await asyncio.wait_for(connect, self.waits.connect + self.waits.answer)

    async def exchange(
        self, stream: Stream, probe: str, payload: bytes, wait: float
    ) -> tuple[bytes, bool]:
        """Send ``payload``, read the answer: (bytes, whether the server closed)."""
        reader, writer = stream
        if payload:
            writer.write(payload)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        data = b""
        while self.progress.budget > 0:
            left = deadline - loop.time()
            if data:  # the answer goes on while bytes keep coming, within a second wait
                left = min(self.waits.idle, left + self.waits.answer)
            if left <= 0:
                break
            try:
                chunk = await asyncio.wait_for(reader.read(self.progress.budget), left)
            except TimeoutError:
                break
            except (OSError, ssl.SSLError):
                return data, True
            if not chunk:
                return data, True
            data += chunk
            self.progress.budget -= len(chunk)
            found = matching_rule(probe, data)
            if found is not None and found[1].certain:
                break
        return data, False

    async def run(self, first: Stream) -> DetectedService | None:
        """The NULL probe on ``first`` (already connected), then the probes in order;
        None when nothing certain was found (``progress.verdict()`` has the rest)."""
        return await self._probe_all(first, None, self.probes)

    async def _probe_all(
        self, first: Stream, context: ssl.SSLContext | None, probes: list[Probe]
    ) -> DetectedService | None:
        progress = self.progress
        data, closed = await self.exchange(first, NULL, b"", self.waits.greeting)
        progress.heard(data)
        reusable: Stream | None = first if not (data or closed) else None
        if closed and not data and context is None:
            progress.closed_at_once = True
        hit = matching_rule(NULL, data)
        if hit is not None and hit[1].certain:
            return await self._finish(first, *hit)
        if reusable is None:
            _abort(first)
        if hit is not None:
            progress.soft = hit[1]
        for probe in probes:
            if progress.budget <= 0:
                break
            if not worth_trying(probe, progress.soft):
                continue
            if probe.name == TLS:
                if context is None and (found := await self._tls(probes)) is not None:
                    return found
                continue
            try:
                stream = reusable or await self.open(context)
            except (OSError, ssl.SSLError, TimeoutError):
                continue
            reusable = None
            data, closed = await self.exchange(stream, probe.name, probe.payload, self.waits.answer)
            progress.heard(data)
            if data:
                progress.closed_at_once = False
            hit = matching_rule(probe.name, data)
            if hit is not None and hit[1].certain:
                return await self._finish(stream, *hit)
            _abort(stream)
            if hit is not None and (progress.soft is None or progress.soft.name == "ssl"):
                progress.soft = hit[1]
        if reusable is not None:
            _abort(reusable)
        return None

    async def _tls(self, probes: list[Probe]) -> DetectedService | None:
        """A TLS handshake; when it succeeds, detection again inside the tunnel."""
        context = tls.client_context()
        try:
            stream = await self.open(context)
        except (OSError, ssl.SSLError, TimeoutError, EOFError):
            return None
        progress = self.progress
        progress.tunnel = "ssl"
        progress.closed_at_once = False
        if progress.soft is not None and progress.soft.name == "ssl":
            progress.soft = None
        sslobj = stream[1].get_extra_info("ssl_object")
        progress.certificate = tls.peer_certificate(sslobj)
        inner = [p for p in probes if p.name != TLS]
        return await self._probe_all(stream, context, inner)

    async def _finish(self, stream: Stream, rule: Rule, match: Match) -> DetectedService:
        """A certain match: the rule's follow-up on the same connection, then the verdict."""
        try:
            if rule.follow_up is not None and self.progress.budget > 0:
                answer, _ = await self.exchange(stream, "", rule.follow_up, self.waits.answer)
                match = enrich(rule, match, answer)
        finally:
            _abort(stream)
        return self.progress.result(match, CONF_CERTAIN)
