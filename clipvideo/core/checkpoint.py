"""Resuming: work an interrupted run finished is kept in a folder, valid only for the recipe that made it.

A recipe is everything that decides a result besides the item itself: the params that shape it and the code
that computes it. The folder records its recipe in a small marker file; when the recipe changes, the work of
the old one is removed before anything is reused, so a changed setting or an edited stage never serves stale
results. Items are written atomically by their producers, and temporaries a killed run left are removed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from clipvideo.core.files import remove_path, remove_stale_temporaries, write_text_atomic

RECIPE_FILE = ".recipe"  # JSON; no .json suffix, so globbing the items never matches it


def code_digest(code: Sequence[Path]) -> str:
    """SHA-256 of the code files (or every .py file of a code folder), in a stable order."""
    digest = hashlib.sha256()
    for source in code:
        files = sorted(source.rglob("*.py")) if source.is_dir() else [source]
        for path in files:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


class Checkpoint:
    """`folder` holds finished work for one recipe; `owns(path)` says which of its files are such work."""

    def __init__(
        self,
        folder: Path,
        recipe: Mapping[str, Any],
        code: Sequence[Path] = (),
        marker: str = RECIPE_FILE,
        owns: Callable[[Path], bool] = lambda path: True,
    ) -> None:
        self.folder = folder
        self.recipe = json.dumps({**recipe, "code": code_digest(code)} if code else dict(recipe))
        self.marker = folder / marker
        self.owns = owns

    def open(self) -> bool:
        """Create the folder, drop what a killed run left half-written, and the work of another recipe.
        True when such work was removed."""
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.folder)
        stale = self.marker.is_file() and self.marker.read_text(encoding="utf-8") != self.recipe
        if stale:
            for path in self.folder.iterdir():
                if path != self.marker and not path.name.startswith(".") and self.owns(path):
                    remove_path(path)
        write_text_atomic(self.marker, self.recipe)
        return stale

    def path(self, name: str) -> Path:
        return self.folder / name

    def clear(self) -> None:
        """The run completed: its outputs hold everything, the kept work is no longer needed."""
        remove_path(self.folder)
