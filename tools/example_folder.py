"""A labelled folder of generated videos and a folder of new ones, to try the folder source and predict offline.

`python -m tools.example_folder DEST` renders, with the sample's own ffmpeg recipes (clipvideo.acquire.sample),
DEST/labelled/<category>/[été/]<name>.mp4 (names with spaces and accents, half in a subfolder) and DEST/new/
(unlabelled videos of another seed). README.md, "Classify your own videos", shows the run on it.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from clipvideo.acquire.sample import generate_sample
from clipvideo.config.schema import SampleParams

CATEGORIES = ["food", "art_music", "travel", "history"]
LETTERS = "abcdefghijklmnopqrstuvwxyz"
PER_CATEGORY = range(2, len(LETTERS) + 1)  # the sample renders 2 or more; a labelled video's name is a letter
RANGE_SHOWN = f"{PER_CATEGORY.start}..{PER_CATEGORY.stop - 1}"


def render(dest: Path, per_category: int, seed: int) -> list[tuple[str, Path]]:
    """(category, video) of a sample rendered under dest/.render (removed by the caller)."""
    params = SampleParams(
        seed=seed,
        videos_per_category=per_category,
        min_duration_s=2,
        max_duration_s=5,
        distractor_opacity=0.5,
        series_per_category=0,
    )
    return [(video.category, video.path) for video in generate_sample(dest / ".render", CATEGORIES, params, seed)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument(
        "--per-category",
        type=int,
        default=8,
        choices=PER_CATEGORY,
        metavar=RANGE_SHOWN,
        help="labelled videos per category (default 8)",
    )
    parser.add_argument(
        "--new",
        type=int,
        default=3,
        choices=PER_CATEGORY,
        metavar=RANGE_SHOWN,
        help="new videos per category (default 3)",
    )
    args = parser.parse_args(argv)
    for category, video in render(args.dest, args.per_category, seed=7):
        number = int(video.stem.rsplit("_", 1)[1])
        folder = args.dest / "labelled" / category / ("été" if number % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        # letters, not digits: the split reads `clip 1`, `clip 2` as episodes of one series (docs/models.md)
        video.rename(folder / f"{category} vidéo {LETTERS[number]}.mp4")
    (args.dest / "new").mkdir(parents=True, exist_ok=True)
    for number, (_, video) in enumerate(render(args.dest, args.new, seed=99)):
        video.rename(args.dest / "new" / f"new video {number:02d}.mp4")
    shutil.rmtree(args.dest / ".render")
    print(
        f"{args.dest}/labelled: {args.per_category} videos x {len(CATEGORIES)} categories; {args.dest}/new: "
        f"{args.new * len(CATEGORIES)} videos"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
