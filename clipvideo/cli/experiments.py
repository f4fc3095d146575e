"""`python -m clipvideo experiments`: DVC's experiments, one row each, with a metric of every variant, in 120 columns.

`dvc exp show` names each metric column by its file (`metrics/random_frame-mixup.json:f1_micro`) and never
wraps a metric header, so the eight variants need about 250 columns and a terminal shows `…` in their place.
This reads the same table (`dvc exp show --csv`) and prints it narrow: variant names wrapped at `-` over two
header lines, a `*` after the best value of each row, and under each experiment the params.yaml values that
differ between the rows shown.
Arguments after the options go to `dvc exp show` (`-A`, `-n 3`, `--rev main`, ...).
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import Sequence

from clipvideo.cli.stage import command_parser
from clipvideo.config.loading import leaf_fields
from clipvideo.config.schema import Params
from clipvideo.config.variants import variants
from clipvideo.core.contracts import DVC_METRICS
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.text import shorten

WIDTH = 120
MISSING = "-"
BEST = "*"  # after the best value of a row (each of them on a tie)


def dvc_table(dvc_args: Sequence[str]) -> list[dict[str, str]]:
    """`dvc exp show --csv` in the working directory, one dict per row (workspace, baselines, experiments)."""
    command = ["dvc", "exp", "show", "--csv", "--no-pager", *dvc_args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["no message"])[-1]
        sys.exit(f"experiments: error: {' '.join(command)} failed: {message}")
    return list(csv.DictReader(io.StringIO(result.stdout)))


def row_name(row: dict[str, str]) -> str:
    """The experiment's name, indented under its baseline (the workspace, a branch or a commit)."""
    return f"  {row['Experiment']}" if row.get("Experiment") else row.get("rev", "")


def number(text: str | None) -> float | None:
    try:
        return float(text or "")
    except ValueError:
        return None


def marked(values: list[float | None]) -> list[str]:
    """Each value to 3 decimals, the row's best (every one, on a tie) followed by BEST, the others by a space."""
    best = max((v for v in values if v is not None), default=None)
    return [MISSING + " " if v is None else f"{v:.3f}{BEST if v == best else ' '}" for v in values]


def changed_params(rows: list[dict[str, str]]) -> list[str]:
    """params.yaml keys whose values differ between the rows."""
    keys = [key for key, _ in leaf_fields(Params)]
    return [key for key in keys if len({row.get(key, "") for row in rows}) > 1]


def render(rows: list[dict[str, str]], metric: str) -> str:
    names = [row_name(row) for row in rows]
    label = max([len("experiment"), *map(len, names)])
    variant_names = list(variants())
    paths = ProjectPaths()  # dvc names a metric's column `<file, relative to the repository>:<metric>`
    metrics_files = {variant: paths.metrics_file(variant).as_posix() for variant in variant_names}
    heads = [variant.split("-", 1) for variant in variant_names]  # linear-mixup -> linear / -mixup
    heads = [(parts[0], "-" + parts[1] if len(parts) > 1 else "") for parts in heads]
    widths = [max(len(first), len(second), len("0.000" + BEST)) for first, second in heads]
    lines = [
        f"{'experiment':<{label}}" + "".join(f"  {first:>{w}}" for (first, _), w in zip(heads, widths, strict=True)),
        f"{metric:<{label}}" + "".join(f"  {second:>{w}}" for (_, second), w in zip(heads, widths, strict=True)),
    ]
    changed = changed_params(rows)
    for name, row in zip(names, rows, strict=True):
        values = marked([number(row.get(f"{metrics_files[variant]}:{metric}")) for variant in variant_names])
        lines.append(f"{name:<{label}}" + "".join(f"  {v:>{w}}" for v, w in zip(values, widths, strict=True)))
        if changed:
            lines.append(shorten("    " + ", ".join(f"{key}={row.get(key, MISSING)}" for key in changed), WIDTH))
    lines.append(f"{BEST} the best {metric} of the row")
    return "\n".join(shorten(line.rstrip(), WIDTH) for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser("python -m clipvideo experiments", __doc__, root=False)
    parser.add_argument("--metric", choices=DVC_METRICS, default=DVC_METRICS[0], help="which metric to show")
    args, dvc_args = parser.parse_known_args(argv)
    print(render(dvc_table(dvc_args), args.metric))
    return 0
