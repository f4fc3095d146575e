"""predict: classify one new video (a file, an http(s) url or a YouTube id) with a trained variant.

Runs the pipeline's own steps on it: the same frame sampling (frames_count, frames.*), frame store, encoder
and float16 embeddings as the frames and embed stages, then the saved model. Prints the category and the
probability of every category. Not a DVC stage: it writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from clipvideo.cli.stage import StageContext, stage_main

DECLARES = ("frames_count", "frames", "embed", "download")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a video file, an http(s) url or a YouTube id")
    parser.add_argument("--variant", default="linear", help="which trained classifier to use (default: linear)")
    parser.add_argument("--model", help="its model file, if not models/<variant>.pt (from `dvc artifacts get`)")


def run(context: StageContext) -> str:
    from pathlib import Path

    from clipvideo.modeling.predict import predict_video

    args = context.args
    return predict_video(context.paths, args.source, args.variant, context.params, context.settings,
                         Path(args.model) if args.model else None)


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("predict", __doc__, DECLARES, run, argv, add_arguments)


if __name__ == "__main__":
    sys.exit(main())
