"""`python -m clipvideo cache [info | clear]`: the per-video cache of frames and embeddings, where it is, what
it holds (entries and size per runtime fingerprint: the decoder's libraries for frames; torch, open_clip, device
and precision path for embeddings), and emptying it (nothing is lost: the next `dvc repro -f -s frames -s embed`
makes it again)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from clipvideo.cli.stage import command_parser
from clipvideo.config.loading import load_settings
from clipvideo.core.cache import VideoCache, open_cache
from clipvideo.core.errors import PipelineError
from clipvideo.core.paths import ProjectPaths


def fingerprint_text(made_with: Any) -> str:
    """`av 18.1.0, ffmpeg libavcodec 62.28.102 ..., pillow 13.0.0`: a runtime fingerprint on one line."""
    if not isinstance(made_with, dict):
        return "no fingerprint (made before the cache recorded one: never served, evicted in time)"
    return ", ".join(
        f"{key} {' '.join(f'{k} {v}' for k, v in value.items())}" if isinstance(value, dict) else f"{key} {value}"
        for key, value in made_with.items()
    )


def fingerprint_lines(cache: VideoCache) -> list[str]:
    """One line per kind and fingerprint: how many entries, how large, made with what."""
    lines = []
    for (kind, made_with), (entries, size) in sorted(cache.fingerprints().items()):
        counted = f"{entries} {'entry' if entries == 1 else 'entries'}"
        lines.append(f"  {kind}: {counted}, {size / 1e6:.1f} MB: {fingerprint_text(json.loads(made_with))}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser("python -m clipvideo cache", __doc__)
    parser.add_argument("action", nargs="?", choices=("info", "clear"), default="info")
    args = parser.parse_args(argv)
    paths = ProjectPaths(args.root)
    try:
        settings = load_settings(paths.settings).cache
    except PipelineError as exc:
        print(f"cache: error: {exc}", file=sys.stderr)
        return 2
    cache = open_cache(paths.root, settings.dir, settings.max_gb)
    described = cache.describe()
    if args.action == "clear":
        cache.clear()
        print(f"cleared {described}")
    else:
        print("\n".join([described, *fingerprint_lines(cache)]))
        if not settings.enabled:
            print("  (settings.yaml: cache.enabled is false: runs neither read nor write it)")
    return 0
