"""`python -m clipvideo cache [info | clear]`: the per-video cache of frames and embeddings, where it is, what
it holds, and emptying it (nothing is lost: the next `dvc repro -f -s frames -s embed` makes it again)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from clipvideo.cli.stage import command_parser
from clipvideo.config.loading import load_settings
from clipvideo.core.cache import open_cache
from clipvideo.core.errors import PipelineError
from clipvideo.core.paths import ProjectPaths


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
        print(described)
    return 0
