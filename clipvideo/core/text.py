"""Text from untrusted files as a console, a CSV or a picture may show it: printable, and cut short."""

from __future__ import annotations

ELLIPSIS = "..."


def printable(text: str) -> str:
    """`text` without control characters (NUL, escape sequences, line breaks): CSV values reach the console."""
    return "".join(c for c in text if c.isprintable())


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
