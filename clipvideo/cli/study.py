"""`python -m clipvideo study`: the reference study's protocol (reference.yaml) as one DVC experiment.

Runs `dvc exp run -n study -S <key>=<value> ...` with every key of the study's protocol (the YouTube dataset,
its four categories, ViT-B-32 with OpenAI's weights (built with QuickGELU, as they were trained), 100 frames per
video, a test share of 0.1) and what reference.yaml's `also_set` adds (a val share carved from the study's
training share). Its summary then puts the study's f1_micro beside ours (docs/models.md#the-studys-protocol).
It needs the network: YouTube (yt-dlp), Kaggle (the CSV, unless datasets/youtube/youtube.csv is there) and the
weights' host (open_clip). `--print` prints the command and runs nothing.
Arguments after the options go to `dvc exp run` (`--queue`, `--temp`, ...).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from clipvideo.cli.stage import command_parser
from clipvideo.core.errors import ParamsError
from clipvideo.core.paths import ProjectPaths
from clipvideo.evaluation.reference import load_reference


def set_value(value: Any) -> str:
    """A value as `-S key=value` takes it (DVC parses it as YAML): lists in flow style, scalars as they are."""
    return json.dumps(value, separators=(",", ":")) if isinstance(value, list | dict) else str(value)


def study_command(paths: ProjectPaths, name: str, dvc_args: Sequence[str] = ()) -> list[str]:
    reference = load_reference(paths.reference)
    command = ["dvc", "exp", "run", "-n", name]
    for key, value in {**reference.protocol, **reference.also_set}.items():
        command += ["-S", f"{key}={set_value(value)}"]
    return [*command, *dvc_args]


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser("python -m clipvideo study", __doc__)
    parser.add_argument("--name", default="study", help="the experiment's name (default: study)")
    parser.add_argument("--print", action="store_true", help="print the command, run nothing")
    args, dvc_args = parser.parse_known_args(argv)
    try:
        command = study_command(ProjectPaths(args.root), args.name, dvc_args)
    except ParamsError as exc:
        print(f"study: error: {exc}", file=sys.stderr)
        return 2
    print(shlex.join(command) if args.print else f"study: running {shlex.join(command)}")
    return 0 if args.print else subprocess.run(command, cwd=args.root).returncode
