"""printable(): text from outside, safe on a terminal, and the outputs that use it."""

from __future__ import annotations

import dataclasses
import re
from ipaddress import ip_address

from hypothesis import given
from hypothesis import strategies as st

from portlib.model import HostResult, HostState, PortState, Protocol, Reason
from portlib.output import render
from portlib.output.diff import diff_reports, render_text
from portlib.textsafe import printable
from tests.report_samples import port, sample_report


def test_escape_and_c0_controls_in_caret_notation() -> None:
    assert printable("\x1b]0;pwned\x07") == "^[]0;pwned^G"
    assert printable("a\tb\nc\rd\x00e") == "a^Ib^Jc^Md^@e"
    assert printable("\x7f") == "^?"
    assert printable("\x1f") == "^_"


def test_c1_controls_and_other_unprintables_as_hex() -> None:
    assert printable("\x85\x9b31m") == "\\x85\\x9b31m"  # NEL, and CSI that some terminals obey
    assert printable("nb\xa0sp") == "nb\\xa0sp"
    assert printable("line\u2028sep") == "line\\xe2\\x80\\xa8sep"
    assert printable("bidi\u202eevil") == "bidi\\xe2\\x80\\xaeevil"
    assert printable("raw\udcffbyte") == "raw\\xffbyte"  # os.fsdecode's surrogateescape


def test_printable_text_is_left_alone() -> None:
    for text in ("", "localhost", "café", "日本語", "a b", "back\\slash"):
        assert printable(text) is text or printable(text) == text


@given(st.text())
def test_the_result_is_always_printable(text: str) -> None:
    assert printable(text).isprintable()


@given(st.text().filter(str.isprintable))
def test_printable_input_comes_back_unchanged(text: str) -> None:
    assert printable(text) == text


EVIL = "evil\x1b]0;owned\x07\nHost: 6.6.6.6"


def evil_report():  # type: ignore[no-untyped-def]
    report = sample_report()
    local = dataclasses.replace(
        report.hosts[0],
        hostname=EVIL,
        ports=(*report.hosts[0].ports, port(8080, PortState.OPEN, Reason.SYN_ACK, service=EVIL)),
    )
    return dataclasses.replace(report, hosts=(local, *report.hosts[1:]))


def test_normal_output_escapes_names_and_services() -> None:
    text = render(evil_report(), "normal")
    assert "\x1b" not in text and "\x07" not in text
    assert "portlib scan report for evil^[]0;owned^G^JHost: 6.6.6.6 (127.0.0.1)" in text
    assert re.search(r"\n8080/tcp +open +evil\^\[\]0;owned\^G\^JHost: 6\.6\.6\.6\n", text)


def test_grepable_output_keeps_one_line_per_host_and_escapes() -> None:
    text = render(evil_report(), "grepable")
    assert "\x1b" not in text and "\x07" not in text
    lines = [line for line in text.splitlines() if line.startswith("Host:")]
    assert len(lines) == 3  # status and ports of 127.0.0.1, status of ::1: nothing forged
    assert all(line.startswith(("Host: 127.0.0.1 (", "Host: ::1 (")) for line in lines)
    assert "8080/open/tcp//evil^[]0;owned^G|Host: 6.6.6.6///" in text


def test_diff_output_escapes_names_and_services() -> None:
    old = sample_report()
    new = evil_report()
    text = render_text(diff_reports(old, new))
    assert "\x1b" not in text and "\x07" not in text
    assert "evil^[]0;owned^G^JHost: 6.6.6.6" in text


def test_xml_keeps_names_as_data() -> None:
    host = HostResult(ip_address("192.0.2.9"), EVIL, HostState.UP, Reason.USER_SET, ())
    report = dataclasses.replace(sample_report(), hosts=(host,), protocols=(Protocol.TCP,))
    xml = render(report, "xml")
    assert "\x1b" not in xml and "\x07" not in xml
