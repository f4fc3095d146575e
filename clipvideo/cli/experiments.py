"""`python -m clipvideo experiments`: DVC's experiments, one row each, with a metric of every variant, in 120 columns.

`dvc exp show` names each metric column by its file (`metrics/random_frame-mixup.json:f1_micro`) and never
wraps a metric header, so the eight variants need about 250 columns and a terminal shows `…` in their place.
This reads the same table (`dvc exp show --csv`) and prints it narrow: variant names wrapped at `-` over two
header lines, a `*` after the value of the variant each row chose on val (the best val_f1_micro: test is never
chosen on), and under each experiment the params.yaml values that differ between the rows shown. Rows scored on
different test sets (reports/<variant>.json's `test_set`) are named, since their numbers do not compare.
`--noise` adds each variant's mean ± sd over the experiments shown: after `dvc exp run -S train.seed=1,2,3,4,5
--queue`, the spread that training's randomness alone causes.
Arguments after the options go to `dvc exp show` (`-A`, `-n 3`, `--rev main`, ...).
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from clipvideo.cli.stage import command_parser
from clipvideo.config.loading import leaf_fields
from clipvideo.config.schema import Params
from clipvideo.config.variants import variants
from clipvideo.core.contracts import DVC_METRICS
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.text import shorten

WIDTH = 120
MISSING = "-"
BEST = "*"  # after the value of the variant the row chose on val (each of them on a tie)
CHOICE_METRIC = "val_f1_micro"


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


def marked(values: list[float | None], choice: list[float | None]) -> list[str]:
    """Each value to 3 decimals, followed by BEST where `choice` (the val metric) is the row's best (every one, on a
    tie), by a space elsewhere."""
    best = max((v for v in choice if v is not None), default=None)
    return [
        MISSING + " " if v is None else f"{v:.3f}{BEST if c is not None and c == best else ' '}"
        for v, c in zip(values, choice, strict=True)
    ]


def test_set_of(row: dict[str, str], report: str) -> str | None:
    """The digest of the test videos the row's run scored (from its report at the row's commit; the workspace's
    from disk), or None where it cannot be read (a queued or failed experiment, a report from before digests)."""
    rev = row.get("rev", "")
    if rev == "workspace":
        try:
            text = Path(report).read_text(encoding="utf-8")
        except OSError:
            return None
    else:
        shown = subprocess.run(["git", "show", f"{rev}:{report}"], capture_output=True, text=True)
        if shown.returncode != 0 or not rev:
            return None
        text = shown.stdout
    try:
        return json.loads(text).get("test_set")
    except (ValueError, AttributeError):
        return None


def noise_lines(rows: list[dict[str, str]], metric: str, files: dict[str, str], width: int) -> list[str]:
    """Each variant's mean ± sd of `metric` over the experiments shown (not their baselines)."""
    runs = [row for row in rows if row.get("Experiment")] or rows
    lines = [f"mean ± sd of {metric} over {len(runs)} experiments:"]
    for variant, file in files.items():
        values = [v for v in (number(row.get(f"{file}:{metric}")) for row in runs) if v is not None]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        text = f"{statistics.mean(values):.3f} ± {spread:.3f} (n={len(values)})" if values else MISSING
        lines.append(f"  {variant:<{width}}  {text}")
    return lines


def changed_params(rows: list[dict[str, str]]) -> list[str]:
    """params.yaml keys whose values differ between the rows."""
    keys = [key for key, _ in leaf_fields(Params)]
    return [key for key in keys if len({row.get(key, "") for row in rows}) > 1]


def render(rows: list[dict[str, str]], metric: str, noise: bool = False) -> str:
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
        values = marked(
            [number(row.get(f"{metrics_files[variant]}:{metric}")) for variant in variant_names],
            [number(row.get(f"{metrics_files[variant]}:{CHOICE_METRIC}")) for variant in variant_names],
        )
        lines.append(f"{name:<{label}}" + "".join(f"  {v:>{w}}" for v, w in zip(values, widths, strict=True)))
        if changed:
            lines.append(shorten("    " + ", ".join(f"{key}={row.get(key, MISSING)}" for key in changed), WIDTH))
    lines.append(
        f"{BEST} the variant the row chose on val ({CHOICE_METRIC}); {metric} is the test set's"
        if metric != CHOICE_METRIC
        else f"{BEST} the best {CHOICE_METRIC} of the row"
    )
    report = paths.report_file(variant_names[0]).as_posix()  # one variant's: a run scores every variant on one set
    digests = {name.strip(): test_set_of(row, report) for name, row in zip(names, rows, strict=True)}
    if len({d for d in digests.values() if d is not None}) > 1:
        lines.append(
            "warning: these rows were scored on different test sets, so their test numbers do not compare: "
            + ", ".join(f"{name} {digest or '?'}" for name, digest in digests.items())
        )
    if noise:
        lines += noise_lines(rows, metric, metrics_files, max(map(len, variant_names)))
    return "\n".join(shorten(line.rstrip(), WIDTH) for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser("python -m clipvideo experiments", __doc__, root=False)
    parser.add_argument("--metric", choices=DVC_METRICS, default=DVC_METRICS[0], help="which metric to show")
    parser.add_argument("--noise", action="store_true", help="each variant's mean ± sd over the experiments shown")
    args, dvc_args = parser.parse_known_args(argv)
    print(render(dvc_table(dvc_args), args.metric, args.noise))
    return 0
