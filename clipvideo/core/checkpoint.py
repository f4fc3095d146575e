"""Resuming a folder of finished work that is valid only for the recipe that made it (the download step's
data/videos/: the params that shape the files). The per-video work of frames and embed resumes from the
per-video cache instead (core.cache), whose keys hold their recipe.

The folder records its recipe in a marker file the caller names; when the recipe changes, the files `owns`
accepts (the work of the old recipe) are removed before anything is reused, so a changed setting never serves
stale results. Items are written atomically by their producers, and temporaries a killed run left are removed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from clipvideo.core.files import remove_path, remove_stale_temporaries, write_text_atomic


class Checkpoint:
    """`folder` holds finished work for one recipe, recorded as JSON in the file `marker`;
    `owns(path)` says which of its files are such work."""

    def __init__(self, folder: Path, recipe: Mapping[str, Any], marker: str, owns: Callable[[Path], bool]) -> None:
        self.folder = folder
        self.recipe = json.dumps(dict(recipe))
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
