"""File names as the catalog keeps them and as people read them: any name the file system allows, losslessly.

A name is a str as `os.fsdecode` gives it: bytes that are not UTF-8 become lone surrogates (surrogateescape).
SQLite text cannot hold a lone surrogate, so such a name is stored as a BLOB of its bytes (`os.fsencode`)
and every other name as TEXT, as in catalogs written before; one name has one stored form, so UNIQUE
constraints and lookups by path still hold. `shown` is the form for JSON answers, CSV files, the skipped-file
report and the terminal: a backslash, a control character and a byte that is not UTF-8 are escaped.
"""
from __future__ import annotations

import os
import unicodedata

ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
SURROGATES = range(0xDC80, 0xDD00)  # what surrogateescape makes of the bytes 0x80-0xff


def to_sql(name: str) -> str | bytes:
    """What the catalog stores for a name: the name itself, or its bytes when it is not UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name)
    return name


def from_sql(value: str | bytes) -> str:
    """A name read back from the catalog (the inverse of `to_sql`)."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _escaped(char: str) -> str:
    code = ord(char)
    if char in ESCAPES:
        return ESCAPES[char]
    if char.isprintable():
        return char
    if code in SURROGATES:
        return f"\\x{code - 0xDC00:02x}"  # a byte that is not UTF-8: always 0x80 or above
    if code < 0x80:
        return f"\\x{code:02x}"  # an ASCII control character: the byte it is
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def shown(name: str) -> str:
    """A name that fits on one line of any text file: '\\' as '\\\\', tab, newline and return as '\\t', '\\n',
    '\\r', other control characters as '\\xNN' (below 0x80) or '\\uNNNN', and a byte that is not UTF-8 as '\\xNN'
    (0x80 and above). Reversible, so two names never look the same; printable names are left as they are."""
    if name.isprintable() and "\\" not in name:
        return name
    return "".join(map(_escaped, name))


def shown_moment(name: str, start: float | None = None, end: float | None = None) -> str:
    """`shown(name)`, and for a scene of a video (its span given) a W3C media fragment ('a.mp4#t=3,6'), so that a
    line of text names what it stands for, as a player takes it."""
    return shown(name) if start is None or end is None else f"{shown(name)}#t={start:g},{end:g}"


def split_moment(text: str) -> tuple[str, float | None]:
    """A name and the start of its media fragment ('a.mp4#t=3,6' -> ('a.mp4', 3.0)); (text, None) without one."""
    name, mark, fragment = text.rpartition("#t=")
    try:
        return (name, float(fragment.split(",")[0] or 0)) if mark and name else (text, None)
    except ValueError:
        return text, None


def folder_of(path: str) -> str:
    """The folder of a path relative to a dataset root ('a/b' of 'a/b/c.jpg'; '' at the top)."""
    return path.rpartition("/")[0]


def fold(text: str) -> str:
    """Text as it is matched: compatibility forms unified, accents dropped, case folded ('Zürich' and 'ZURICH'
    are 'zurich', 'Straße' is 'strasse')."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
