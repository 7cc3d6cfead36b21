"""Every report format by name: one ``load`` that reads whatever portlib writes, one
``dump`` that writes any format, and ``parse``/``render`` for text.

Formats: ``"xml"`` (nmap's ``-oX``), ``"json"`` (``--json``), ``"grepable"`` (``-oG``)
and ``"normal"`` (``-oN``, the table). ``load`` and ``parse`` read XML (nmap's or
portlib's) and portlib's JSON, told apart by the content. A file's format for
``dump`` follows its suffix (``.xml``, ``.json``, ``.gnmap``, ``.nmap``) unless given.
Renderers load on first use, so writing the table never imports the XML code.

    >>> from portlib.output import dump, load, parse, render
    >>> dump(report, "monday.xml")                                  # doctest: +SKIP
    >>> [p.port for p in load("monday.xml").open_ports()]           # doctest: +SKIP
    [22, 8000]
    >>> parse(render(report, "json")) == report                     # doctest: +SKIP
    True
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, Literal

from portlib.errors import OutputError, ReportFormatError
from portlib.model import ScanReport
from portlib.output.reportinput import ReportInput

if TYPE_CHECKING:
    from portlib.output.stream import ReportWriter

Format = Literal["xml", "json", "grepable", "normal"]
FORMATS: tuple[Format, ...] = ("xml", "json", "grepable", "normal")
SUFFIXES: dict[str, Format] = {
    ".xml": "xml",
    ".json": "json",
    ".gnmap": "grepable",
    ".nmap": "normal",
}


def load(source: str | os.PathLike[str] | IO[bytes]) -> ScanReport:
    """The report in a file (a path) or a binary stream, in any format portlib reads.

    Raises ReportFormatError, naming the file, for anything that is not such a report
    (or that is larger than :data:`~portlib.output.reportinput.MAX_REPORT_BYTES`).

    >>> load("nmap-monday.xml").open_ports()                        # doctest: +SKIP
    """
    if isinstance(source, str | os.PathLike):
        opened = ReportInput.from_path(source)
    else:
        opened = ReportInput.from_stream(source)
    with opened:
        return _read(opened)


def parse(text: str | bytes) -> ScanReport:
    """The report whose text (nmap or portlib XML, portlib JSON) is ``text``.

    >>> parse('<nmaprun start="0"/>').method
    <ScanMethod.PING: 'ping'>
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    with ReportInput.from_bytes(data) as opened:
        return _read(opened)


def _read(source: ReportInput) -> ScanReport:
    kind = sniff(source.head())
    if kind == "xml":
        from portlib.output.xmlload import read_nmap_xml

        return read_nmap_xml(source)
    if kind == "json":
        from portlib.output.jsonload import read_json_report

        return read_json_report(source)
    raise ReportFormatError(
        "neither nmap/portlib XML nor portlib JSON (it should start with '<' or '{')",
        source=source.name,
    )


def sniff(head: bytes) -> Format | None:
    """``"xml"`` or ``"json"`` from a report's first bytes (UTF-8, or UTF-16 as XML
    may be), or None.

    >>> sniff(b"\\xef\\xbb\\xbf\\n  <?xml"), sniff('{"hosts"'.encode("utf-16")), sniff(b"\\0\\0")
    ('xml', 'json', None)
    """
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head.decode("utf-16", errors="ignore")
    elif len(head) >= 2 and (head[0] == 0) != (head[1] == 0):  # UTF-16 without its mark
        text = head.decode("utf-16-be" if head[0] == 0 else "utf-16-le", errors="ignore")
    else:
        text = head.removeprefix(b"\xef\xbb\xbf").decode("latin-1")
    first = text.lstrip(" \t\r\n")[:1]
    return "xml" if first == "<" else "json" if first == "{" else None


def writer_for(
    format: Format,
    out: IO[str],
    *,
    open_only: bool = False,
    reason: bool = False,
    all_ports: bool = False,
    clock: Callable[[], float] | None = None,
    name: str | None = None,
) -> ReportWriter:
    """A writer of ``format`` to ``out``, to write a report host by host as a scan
    runs (:mod:`portlib.output.stream`); ``clock`` gives XML's host end times,
    ``name`` what errors call ``out``.

    >>> writer = writer_for("xml", open("scan.xml", "w"))             # doctest: +SKIP
    >>> writer.begin(header); writer.host(host); writer.end(report)  # doctest: +SKIP
    """
    options: dict[str, Any] = {
        "open_only": open_only,
        "reason": reason,
        "all_ports": all_ports,
        "name": name,
    }
    if format == "normal":
        from portlib.output.normal import NormalWriter

        return NormalWriter(out, **options)
    if format == "xml":
        from portlib.output.nmapxml import XmlWriter

        return XmlWriter(out, clock=clock, **options)
    if format == "grepable":
        from portlib.output.grepable import GrepableWriter

        return GrepableWriter(out, **options)
    if format == "json":
        from portlib.output.jsonout import JsonWriter

        return JsonWriter(out, **options)
    raise OutputError(f"unknown report format {format!r} ({', '.join(FORMATS)})")


def render(
    report: ScanReport,
    format: Format = "xml",
    *,
    open_only: bool = False,
    reason: bool = False,
    all_ports: bool = False,
) -> str:
    """``report`` as text in ``format``; ``open_only`` is ``--open``, ``reason`` adds the
    table's REASON column (``--reason``), ``all_ports`` lists every port instead of
    folding the commonest states (``--all-ports``). The text is what the format's
    writer (:func:`writer_for`) writes for the report's hosts one by one.

    >>> render(report, "grepable").splitlines()[1]                   # doctest: +SKIP
    'Host: 127.0.0.1 (localhost)\\tStatus: Up'
    """
    from portlib.output.stream import render_whole

    def make(out: IO[str], end: float) -> ReportWriter:
        return writer_for(
            format, out, open_only=open_only, reason=reason, all_ports=all_ports, clock=lambda: end
        )

    return render_whole(report, make)


def dump(
    report: ScanReport,
    target: str | os.PathLike[str] | IO[str],
    format: Format | None = None,
    *,
    open_only: bool = False,
    reason: bool = False,
    all_ports: bool = False,
    append: bool = False,
) -> None:
    """Write ``report`` to a file or a text stream in ``format`` (for a file, by default
    the one its suffix names). A file is replaced atomically and symlinks planted in
    shared directories are refused (:mod:`portlib.output.safewrite`); ``append`` adds to
    the file instead. Raises OutputError.

    >>> dump(report, "scans/monday.gnmap")                          # doctest: +SKIP
    >>> dump(report, sys.stdout, "normal")                          # doctest: +SKIP
    """
    options = {"open_only": open_only, "reason": reason, "all_ports": all_ports}
    if isinstance(target, str | os.PathLike):
        path = os.fspath(target)
        from portlib.output.safewrite import write_text

        write_text(path, render(report, format_of(path, format), **options), append=append)
        return
    if format is None:
        raise OutputError(f"writing to a stream needs format= ({', '.join(FORMATS)})")
    try:
        target.write(render(report, format, **options))
        target.flush()
    except BrokenPipeError:
        raise  # the reader left (``| head``): the caller decides whether that matters
    except OSError as exc:
        name = getattr(target, "name", "the stream")
        raise OutputError(f"cannot write to {name}: {exc.strerror or exc}") from None


def format_of(path: str, format: Format | None = None) -> Format:
    """``format``, or the one ``path``'s suffix names; OutputError when neither says."""
    chosen = format or SUFFIXES.get(os.path.splitext(path)[1].lower())
    if chosen is None:
        raise OutputError(
            f"cannot tell the format of {path} from its name: give format= ({', '.join(FORMATS)})"
        )
    return chosen


def only_open(report: ScanReport) -> ScanReport:
    """``--open``: open and open|filtered ports only (listed or folded), and only the
    hosts that have some.

    >>> [p.state.value for p in only_open(report).hosts[0].ports]     # doctest: +SKIP
    ['open', 'open|filtered']
    """
    from portlib.output.stream import only_open_host

    hosts = tuple(h for h in map(only_open_host, report.hosts) if h is not None)
    return dataclasses.replace(report, hosts=hosts)
