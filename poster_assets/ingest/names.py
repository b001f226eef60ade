"""File names as the file system gives them, as the database can hold them, and as a person reads them.

On POSIX a file name is bytes; Python hands names that are not valid UTF-8 over as ``str`` with
lone surrogates (``os.fsdecode``'s ``surrogateescape``), which still open the file but which
neither DuckDB nor a UTF-8 encoder accept. ``db_text`` turns those bytes into visible ``\\xNN``
escapes (``latin1_\\xe9t\\xe9.jpg``) and leaves every valid name exactly as it is.
"""

from __future__ import annotations

import os
import unicodedata

# Categories that move the cursor, change direction or are no character at all: Cc (control:
# newline, tab, ESC, NUL), Cf (format: bidi overrides), Zl / Zp (line / paragraph separators),
# Cs (lone surrogates).
_INVISIBLE = {"Cc", "Cf", "Zl", "Zp", "Cs"}
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def fs_bytes(name: str) -> bytes:
    """The bytes of a name as the file system holds them (inverse of ``os.fsdecode``)."""
    try:
        return os.fsencode(name)
    except UnicodeEncodeError:  # a lone surrogate the file system never made (not from fsdecode)
        return name.encode("utf-8", "surrogatepass")


def db_text(text: str) -> str:
    """``text`` unchanged when it is valid Unicode, else with undecodable bytes as ``\\xNN``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("ascii")


def is_db_safe(text: str) -> bool:
    return db_text(text) == text


def printable(text: str) -> str:
    """One line a terminal shows as is: control and format characters become escapes."""
    text = db_text(text)
    if all(unicodedata.category(ch) not in _INVISIBLE for ch in text):
        return text
    out = []
    for ch in text:
        if unicodedata.category(ch) in _INVISIBLE:
            out.append(_SHORT.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"))
        else:
            out.append(ch)
    return "".join(out)
