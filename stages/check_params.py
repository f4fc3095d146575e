"""check_params: validate all of params.yaml (and settings.yaml); writes nothing.

The first stage of dvc.yaml, declaring the whole params file: any change to params.yaml reruns it, so an
unknown or misspelled key (`dvc exp run -S +frame_count=8`) stops the run with the one-line message even
when no other stage would rerun and check it. It has no output, so its rerun reruns nothing else.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from clipvideo.cli import stage_main
from clipvideo.paths import ProjectPaths


def run(paths: ProjectPaths, params: dict[str, Any], settings: dict[str, Any], _: argparse.Namespace) -> str:
    return f"{paths.params} and {paths.settings} are valid"  # stage_main checked both before calling this


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("check_params", __doc__, (), run, argv)


if __name__ == "__main__":
    sys.exit(main())
