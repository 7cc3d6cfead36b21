"""What one matcher concluded from a server's bytes (pure value)."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Match:
    """A matcher's verdict. ``certain`` ends detection (nmap's "match"); an uncertain
    one names the service but lets later probes look for the product ("softmatch")."""

    name: str
    product: str | None = None
    version: str | None = None
    extra_info: str | None = None
    os_hint: str | None = None
    device_hint: str | None = None
    cpe: tuple[str, ...] = ()
    certain: bool = True

    def with_extra(self, note: str) -> Match:
        """This match with ``note`` appended to its extra info."""
        extra = f"{self.extra_info}; {note}" if self.extra_info else note
        return replace(self, extra_info=extra)
