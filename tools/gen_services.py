#!/usr/bin/env python3
"""Generate portlib/data/services.txt, portlib's service registry, from the registries
installed on a Debian machine.

Sources (only port numbers, names, aliases and frequencies are carried over):

- ``/etc/services`` from Debian's ``netbase`` package: IANA's service names and aliases.
- ``/usr/share/nmap/nmap-services`` from Debian's ``nmap-common`` package: how often
  each port is found open in the wild (its third column), which is nmap's
  ``--top-ports`` ranking, and nmap's name for ports IANA's list lacks.

Merge rules, per (port, protocol), TCP and UDP only:

- name: the IANA name where ``/etc/services`` has one, else nmap's name; nmap's
  placeholder name ``unknown`` never becomes a name.
- aliases: the ``/etc/services`` aliases, then nmap's name when it differs from the name;
  names that differ only in case count as the same (lookups ignore case).
- frequency: nmap's, written as an integer count of millionths (nmap prints six
  decimals, so this is exact); ``-`` when nmap does not list the port. Ports nmap
  lists as ``unknown`` keep their frequency, because the ranking needs them.

Output format: one header line, then one section per protocol whose rows are in
nmap's ranking order (frequency descending, ties by port ascending, which is the order
``nmap --top-ports`` picks; tests/test_services.py checks it against nmap), followed by
the ports nmap does not list, ascending. So the first N rows of a section are the top N
ports, and a loader gets the ranking without sorting anything::

    #portlib-services 1 <how it was generated>
    @tcp
    <port> <frequency|-> [<name> [<alias> ...]]
    @udp
    ...

The output depends only on the two input files, so rerunning on the same inputs
gives the same bytes. To regenerate (needs the ``netbase`` and ``nmap-common``
packages installed)::

    python tools/gen_services.py            # writes portlib/data/services.txt
    python tools/gen_services.py --check    # exit 1 if the committed file is stale
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "portlib" / "data" / "services.txt"
ETC_SERVICES = Path("/etc/services")
NMAP_SERVICES = Path("/usr/share/nmap/nmap-services")
PROTOCOLS = ("tcp", "udp")
FORMAT_VERSION = 1


@dataclass
class Entry:
    iana_name: str | None = None
    iana_aliases: list[str] = field(default_factory=list)
    nmap_name: str | None = None
    frequency_ppm: int | None = None


def _port_proto(text: str, source: Path, lineno: int) -> tuple[int, str]:
    port_text, _, proto = text.partition("/")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535 or not proto:
        raise SystemExit(f"{source}:{lineno}: bad port/protocol field {text!r}")
    return int(port_text), proto


def read_etc_services(path: Path, entries: dict[tuple[str, int], Entry]) -> None:
    """Name and aliases per port: ``name port/proto [aliases...] [# comment]``."""
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) < 2:
            raise SystemExit(f"{path}:{lineno}: expected 'name port/protocol'")
        port, proto = _port_proto(fields[1], path, lineno)
        if proto not in PROTOCOLS:
            continue
        entry = entries.setdefault((proto, port), Entry())
        if entry.iana_name is None:  # the first line for a port wins, as getservbyport does
            entry.iana_name = fields[0]
            entry.iana_aliases = fields[2:]


def read_nmap_services(path: Path, entries: dict[tuple[str, int], Entry]) -> None:
    """Name and open frequency per port: ``name<TAB>port/proto<TAB>0.dddddd[<TAB># ...]``."""
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw or raw.startswith("#"):
            continue
        fields = raw.split("\t")
        if len(fields) < 3:
            raise SystemExit(f"{path}:{lineno}: expected name, port/protocol and frequency")
        port, proto = _port_proto(fields[1], path, lineno)
        if proto not in PROTOCOLS:
            continue
        whole, dot, decimals = fields[2].partition(".")
        if not (whole.isdigit() and dot and decimals.isdigit() and len(decimals) <= 6):
            raise SystemExit(f"{path}:{lineno}: frequency {fields[2]!r} is not 0.dddddd")
        entry = entries.setdefault((proto, port), Entry())
        entry.frequency_ppm = int(whole) * 1_000_000 + int(decimals.ljust(6, "0"))
        if fields[0] != "unknown":
            entry.nmap_name = fields[0]


def rank_key(port: int, entry: Entry) -> tuple[bool, int, int]:
    """Most often open first; ports without a frequency last; ties by port number."""
    unranked = entry.frequency_ppm is None
    return (unranked, -(entry.frequency_ppm or 0), port)


def render_line(port: int, entry: Entry) -> str:
    name = entry.iana_name or entry.nmap_name
    # Lookups ignore case, so names that differ only in case (x11, X11) are one name.
    known = {name.lower()} if name else set()
    aliases = []
    for alias in [*entry.iana_aliases, entry.nmap_name or ""]:
        if alias and alias.lower() not in known:
            known.add(alias.lower())
            aliases.append(alias)
    frequency = "-" if entry.frequency_ppm is None else str(entry.frequency_ppm)
    return " ".join([str(port), frequency, *([name] if name else []), *aliases])


def _package_version(package: str) -> str:
    try:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "?"
    return done.stdout.strip() or "?"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def render(etc_services: Path, nmap_services: Path) -> str:
    entries: dict[tuple[str, int], Entry] = {}
    read_etc_services(etc_services, entries)
    read_nmap_services(nmap_services, entries)
    header = (
        f"#portlib-services {FORMAT_VERSION} generated by tools/gen_services.py from"
        f" {etc_services} (netbase {_package_version('netbase')}, sha256 {_digest(etc_services)})"
        f" and {nmap_services} (nmap-common {_package_version('nmap-common')},"
        f" sha256 {_digest(nmap_services)}); line: port frequency-ppm|- [name [alias...]]"
    )
    lines = [header]
    for proto in PROTOCOLS:
        lines.append(f"@{proto}")
        ports = sorted(
            (port for (p, port) in entries if p == proto),
            key=lambda port: rank_key(port, entries[(proto, port)]),
        )
        lines.extend(render_line(port, entries[(proto, port)]) for port in ports)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--etc-services", type=Path, default=ETC_SERVICES)
    parser.add_argument("--nmap-services", type=Path, default=NMAP_SERVICES)
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--check", action="store_true", help="compare with the output file instead of writing"
    )
    args = parser.parse_args(argv)
    text = render(args.etc_services, args.nmap_services)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: rerun tools/gen_services.py", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}: {len(text.splitlines()) - 3} entries, {len(text)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
