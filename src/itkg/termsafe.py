"""One escaping function for everything itkg prints for people: tables, text reports, errors.

Values in those outputs come from patient files, file names and servers. Printed raw, an escape
sequence among them can recolour or clear the terminal, plant an OSC 8 hyperlink whose text and
target differ, set the window title, ring the bell; a carriage return, a line separator (U+2028)
or a bidirectional override (U+202E) can make a line read differently from what it holds. Every
character that is not printable (Python's ``str.isprintable``: controls, format characters,
separators other than the plain space, surrogates from undecodable file names, unassigned code
points) is shown as a Python-style escape instead. Machine outputs (JSON, CSV, Turtle) keep
values exactly; JSON escapes C0 controls itself.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every character that a terminal could act on shown as an escape.

    >>> printable("Zoe")
    'Zoe'
    >>> print(printable("a\\x1b]8;;http://x\\x07b\\rc\\u202ed\\u2028e"))
    a\\x1b]8;;http://x\\x07b\\rc\\u202ed\\u2028e
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)
