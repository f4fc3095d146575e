"""The shared shape of every stage entry point: `--help`, params, one-line errors, exit codes, a summary line.

A stage module parses its arguments, declares the params it reads (the same keys dvc.yaml declares for it:
a test checks), and calls one library function, importing the library only after the arguments are parsed,
so `--help` answers at once. The function returns the summary line this prints with the time taken.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from clipvideo.config.declared import Declared
from clipvideo.config.loading import load_params, load_settings
from clipvideo.config.schema import Settings
from clipvideo.core.errors import DiskFullError, PipelineError
from clipvideo.core.paths import ProjectPaths


@dataclass(frozen=True)
class Declaration:
    """The params.yaml keys a stage reads, and who reads them (named when it reads another key)."""

    keys: tuple[str, ...]
    owner: str


@dataclass(frozen=True)
class StageContext:
    paths: ProjectPaths
    params: Declared  # params.yaml, validated in full, seen through the stage's declaration
    settings: Settings  # settings.yaml (never a DVC param: it changes how work is done, not what it gives)
    args: argparse.Namespace


def command_parser(prog: str, description: str | None, root: bool = True) -> argparse.ArgumentParser:
    """The parser of a stage or a `python -m clipvideo` command: its docstring as the help, `--root` when `root`."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the docstring's paragraphs
    )
    if root:
        parser.add_argument("--root", type=Path, default=Path("."), help="project root (default: .)")
    return parser


def stage_parser(name: str, description: str | None) -> argparse.ArgumentParser:
    return command_parser(f"python -m stages.{name}", description)


def stage_main(
    name: str,
    description: str | None,
    declares: Sequence[str] | Callable[[argparse.Namespace, ProjectPaths], Declaration],
    run: Callable[[StageContext], str],
    argv: Sequence[str] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """Parse arguments, validate params and settings, run the stage, print its summary; 2 on a user error.

    `declares`: the params.yaml keys the stage reads (a function of the arguments for train: its variant's).
    """
    parser = stage_parser(name, description)
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    paths = ProjectPaths(args.root)
    started = time.monotonic()
    with stopped_by_sigterm():
        return run_stage(name, declares, run, args, paths, started)


@contextlib.contextmanager
def stopped_by_sigterm() -> Iterator[None]:
    """SIGTERM (a scheduler, `kill`, a cluster manager) stops the stage as Ctrl-C does: its engine's work ends and
    what finished is kept, instead of dying at once in the middle of a write. The old handler comes back after."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_stage(
    name: str,
    declares: Sequence[str] | Callable[[argparse.Namespace, ProjectPaths], Declaration],
    run: Callable[[StageContext], str],
    args: argparse.Namespace,
    paths: ProjectPaths,
    started: float,
) -> int:
    try:
        params = load_params(paths.params)
        settings = load_settings(paths.settings)
        declared = declares(args, paths) if callable(declares) else Declaration(tuple(declares), name)
        context = StageContext(paths, Declared(params, declared.keys, declared.owner), settings, args)
        summary = run(context)
    except PipelineError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: stopped (Ctrl-C or SIGTERM); what finished is kept, a rerun goes on", file=sys.stderr)
        return 130
    except OSError as exc:  # outside atomic_path, which names its output itself (DiskFullError)
        full = DiskFullError.of(exc, "a file")
        if full is None:
            raise
        print(f"{name}: error: {full}", file=sys.stderr)
        return 2
    print(f"{name}: {summary} ({time.monotonic() - started:.1f}s)")
    return 0
