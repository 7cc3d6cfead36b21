"""Text from outside (host names, banners, process names) made safe to print on a terminal.

A name that carries ``\\x1b]0;...`` can retitle a terminal, move the cursor or hide
lines; a newline can forge a row of a table. :func:`printable` writes every
character a terminal would act on as visible text, as ``lsof`` and ``cat -v`` do:

- ESC and the other C0 controls and DEL in caret notation (``^[``, ``^I``, ``^?``);
- C1 controls and the other characters up to U+00FF that Python does not call
  printable (no-break space, soft hyphen) as ``\\xNN`` of the code point, and bytes
  that were not valid UTF-8 (kept by Python as lone surrogates ``\\udc80``-``\\udcff``)
  as ``\\xNN`` of the byte;
- any other character Python does not call printable (line and paragraph
  separators, format characters) as the ``\\xNN`` of its UTF-8 bytes.

Pure: no I/O.
"""

from __future__ import annotations

# C0 controls and DEL -> caret notation: chr(code ^ 0x40) is "@".."_" for 0..31, "?" for 127.
_CARET: dict[str, str] = {chr(code): "^" + chr(code ^ 0x40) for code in (*range(0x20), 0x7F)}


def _escape(char: str) -> str:
    caret = _CARET.get(char)
    if caret is not None:
        return caret
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, as surrogateescape keeps it
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return "".join(f"\\x{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on written visibly.

    >>> printable("evil\\x1b]0;owned\\x07name")
    'evil^[]0;owned^Gname'
    >>> printable("tab\\there"), printable("del\\x7f"), printable("c1\\x85")
    ('tab^Ihere', 'del^?', 'c1\\\\x85')
    >>> printable("caf\\u00e9 \\u2028")
    'café \\\\xe2\\\\x80\\\\xa8'
    """
    if text.isprintable():  # the usual case: one C pass, nothing to build
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


__all__ = ["printable"]
