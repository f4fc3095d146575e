"""predict: classify new videos (files, folders walked recursively, http(s) urls, YouTube ids) with a trained variant.

Runs the pipeline's own steps on each: the same frame sampling (frames_count, frames.*), frame store, encoder
and float16 embeddings as the frames and embed stages (through the per-video cache), then the saved model. One
video: prints its category and the probability of every category. Several, or --out: a table, and with --out a
CSV with one row per video (path, status, reason, predicted, variant, p_<category>...). Not a DVC stage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from clipvideo.cli.stage import StageContext, stage_main

DECLARES = ("frames_count", "frames", "embed", "download")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="+", metavar="PATH", help="video files, folders, http(s) urls, YouTube ids")
    parser.add_argument("--variant", default="linear", help="which trained classifier to use (default: linear)")
    parser.add_argument("--model", help="its model file, if not models/<variant>.pt (from `dvc artifacts get`)")
    parser.add_argument("--out", help="write one row per video to this CSV (predictions.csv)")


def run(context: StageContext) -> str:
    from pathlib import Path

    from clipvideo.modeling.predict import predict_videos

    args = context.args
    model = Path(args.model) if args.model else None
    return predict_videos(context.paths, args.sources, args.variant, context.params, context.settings, args.out, model)


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("predict", __doc__, DECLARES, run, argv, add_arguments)


if __name__ == "__main__":
    sys.exit(main())
