"""download: fetch every valid manifest row -> data/videos/ and data/videos.csv.

Resumable (both outputs are `persist: true` in dvc.yaml): a video already here is never fetched again,
`failed` rows are retried, `unavailable` ones are skipped unless settings.yaml's download.retry_unavailable is
set. A killed run loses no finished video. When the first attempts all fail before reaching any host, the
stage stops at once: the network is down, and every row not tried stays `failed` for the next run.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from clipvideo.cli.stage import StageContext, stage_main

DECLARES = ("download",)


def run(context: StageContext) -> str:
    from clipvideo.acquire.download import download_videos

    return download_videos(context.paths, context.params.download, context.settings.download)


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("download", __doc__, DECLARES, run, argv)


if __name__ == "__main__":
    sys.exit(main())
