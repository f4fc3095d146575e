"""Text from untrusted files as a console, a CSV or a picture may show it: printable, and cut short."""

from __future__ import annotations

ELLIPSIS = "..."


def printable(text: str) -> str:
    """`text` without control characters (NUL, escape sequences, line breaks): CSV values reach the console."""
    return "".join(c for c in text if c.isprintable())


def escaped(text: str) -> str:
    """`text` with each control character written as its escape (`\\x00`, `\\x1b`, `\\n`): printable, and
    it still shows what was there (a hostile url kept as evidence)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def clipped(text: str, limit: int) -> str:
    """`text` whole if it fits in `limit` characters, else cut at a word and marked with its full length."""
    if len(text) <= limit:
        return text
    note = f" [cut from {len(text):,} characters]"
    return shorten(text, limit - len(note), at_word=True) + note


def shorten(text: str, limit: int, at_word: bool = False) -> str:
    """`text` whole if it fits in `limit` characters, else cut (at a word boundary when `at_word`) with "..."."""
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - len(ELLIPSIS))]
    if at_word:
        space = cut.rfind(" ")
        if space > limit // 2:
            cut = cut[:space]
        cut = cut.rstrip(" ,;:")
    return cut + ELLIPSIS


def quoted(value: object, limit: int = 63) -> str:
    """A value as an error message quotes it: its repr, cut short (a value can be megabytes)."""
    return shorten(repr(value), limit)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
