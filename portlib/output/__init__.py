"""portlib's report formats: writers and readers of nmap's XML, grepable and normal
outputs and portlib's JSON, with one ``load`` for every format and one ``dump``.

    >>> from portlib.output import dump, load
    >>> dump(report, "monday.xml")                                  # doctest: +SKIP
    >>> [p.port for p in load("monday.xml").open_ports()]           # doctest: +SKIP
    [22, 8000]

``portlib.load_report``, ``parse_report``, ``dump_report`` and ``render_report`` are
these four functions. ``writer_for`` gives the writer each of them renders through,
to write a report host by host while a scan runs (:mod:`portlib.output.stream`).
"""

from portlib.output.formats import (
    FORMATS,
    Format,
    dump,
    load,
    only_open,
    parse,
    render,
    writer_for,
)
from portlib.output.stream import ReportWriter, ScanHeader

__all__ = [
    "FORMATS",
    "Format",
    "ReportWriter",
    "ScanHeader",
    "dump",
    "load",
    "only_open",
    "parse",
    "render",
    "writer_for",
]
