"""The shared shape of every stage entry point: `--help`, params, one-line errors, exit codes."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from clipvideo.errors import DiskFullError, PipelineError
from clipvideo.params import load_params, load_settings
from clipvideo.paths import ProjectPaths

# run(paths, params (the stage's sections of params.yaml), settings (all of settings.yaml), args) -> summary
StageRun = Callable[[ProjectPaths, dict[str, Any], dict[str, Any], argparse.Namespace], str]


def stage_main(
    name: str,
    description: str,
    sections: Sequence[str],
    run: StageRun,
    argv: Sequence[str] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """Parse arguments, validate params and settings, run the stage, print its summary; 2 on a user error.

    `sections` are the params.yaml sections the stage may read: the ones dvc.yaml declares for it.
    """
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
        params = load_params(paths.params)
        settings = load_settings(paths.settings)
        summary = run(paths, {section: params[section] for section in sections}, settings, args)
    except PipelineError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # outside atomic_path, which names its output itself (DiskFullError)
        if exc.errno not in DiskFullError.DISK_FULL_ERRNOS:
            raise
        print(f"{name}: error: {DiskFullError(exc.filename2 or exc.filename or 'a file')}", file=sys.stderr)
        return 2
    print(f"{name}: {summary} ({time.monotonic() - started:.1f}s)")
    return 0


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
