"""What makes videos one series: the key that keeps them on one side of the split (docs/models.md#the-split).

A video's key is computed from its own row alone, so adding or losing other videos never changes it:
the opening of its description when it has one (on the Kaggle CSV, the first line is the channel's name:
one channel's episodes, re-uploads and intros share it), else its title without digits (`Ep 1`, `Ep 2`).
Text is normalised first: Unicode NFKC, case folded, every run of non-letters and non-digits one space.
"""

from __future__ import annotations

import re
import unicodedata

MAX_KEY_CHARS = 80
NON_WORD = re.compile(r"[\W_]+")
DIGITS = re.compile(r"\d+")


def normalised(text: str) -> str:
    return " ".join(NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split())


def series_key(title: str, description: str) -> str:
    """`desc: <first line of the description>` or, without one, `title: <title without digits>`; "" without both."""
    opening = next((line for line in description.splitlines() if normalised(line)), "")
    if opening:
        return "desc: " + normalised(opening)[:MAX_KEY_CHARS]
    words = normalised(DIGITS.sub(" ", title))
    return "title: " + words[:MAX_KEY_CHARS] if words else ""
