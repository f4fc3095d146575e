"""`python -m clipvideo check`: validate params.yaml, settings.yaml and variants.yaml with the project's own
loader, without DVC. One line per problem; exit code 2 when there is one.

DVC parses params.yaml itself before any stage runs (for `${...}` in dvc.yaml and for params deps), with a
YAML loader that expands anchors and aliases: a few hundred bytes of nested aliases grow to gigabytes there.
This loader refuses anchors and aliases before expanding anything, so run this first on a params.yaml you did
not write (a pull request), e.g. from a git pre-commit hook or CI (docs/security.md).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from clipvideo.cli.stage import command_parser
from clipvideo.config.loading import load_params, load_settings
from clipvideo.config.variants import load_variants
from clipvideo.core.errors import PipelineError
from clipvideo.core.paths import ProjectPaths


def problems(paths: ProjectPaths) -> list[str]:
    """Each file checked on its own, so one bad file does not hide another's problem."""
    found = []
    loaders: tuple[tuple[Callable[[Path], object], Path], ...] = (
        (load_params, paths.params),
        (load_settings, paths.settings),
        (load_variants, paths.variants),
    )
    for load, path in loaders:
        try:
            load(path)
        except PipelineError as exc:
            found.append(str(exc))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser("python -m clipvideo check", __doc__)
    paths = ProjectPaths(parser.parse_args(argv).root)
    found = problems(paths)
    for problem in found:
        print(f"check: error: {problem}", file=sys.stderr)
    if found:
        return 2
    print(f"check: {paths.params}, {paths.settings} and {paths.variants} are valid")
    return 0
