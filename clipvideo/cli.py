"""The shared shape of every stage entry point: `--help`, params, one-line errors, exit codes."""

from __future__ import annotations

import argparse
import errno
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from clipvideo.errors import PipelineError
from clipvideo.params import load_params
from clipvideo.paths import ProjectPaths

StageRun = Callable[[ProjectPaths, dict[str, Any], argparse.Namespace], str]


def stage_main(
    name: str,
    description: str,
    sections: Sequence[str],
    run: StageRun,
    argv: Sequence[str] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """Parse arguments, validate params, run the stage, print its summary; 2 on a user error."""
    parser = argparse.ArgumentParser(
        prog=f"python -m stages.{name}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the docstring's paragraphs
    )
    parser.add_argument("--root", type=Path, default=Path("."), help="project root (default: .)")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    paths = ProjectPaths(args.root)
    started = time.monotonic()
    try:
        params = load_params(paths.params, sections)
        summary = run(paths, params, args)
    except PipelineError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # atomic writes left every earlier output whole, and the resume folders keep finished videos
        where = exc.filename or paths.root
        print(f"{name}: error: {where}: disk full; free space and rerun (finished videos are kept)", file=sys.stderr)
        return 2
    print(f"{name}: {summary} ({time.monotonic() - started:.1f}s)")
    return 0


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
