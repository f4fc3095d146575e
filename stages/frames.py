"""frames: sample `frames_count` evenly spaced frames per video -> data/frames/<id>.npz, data/frames.csv.

data/frames/settings.json records frames_count, frames.size and frames.mode with the frames they made. A
video that cannot be decoded is an `error` row with its reason; a killed run resumes per video.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from clipvideo.cli.stage import StageContext, stage_main

DECLARES = ("frames_count", "frames")


def run(context: StageContext) -> str:
    from clipvideo.video.frames import extract_frames

    params, settings = context.params, context.settings
    return extract_frames(
        context.paths, params.frames_count, params.frames, settings.frames, settings.engine, settings.cache
    )


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("frames", __doc__, DECLARES, run, argv)


if __name__ == "__main__":
    sys.exit(main())
