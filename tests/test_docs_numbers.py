"""The numbers the docs quote for the default run are the committed results (metrics/*.json, metrics/summary.md,
written by `dvc repro` on the default params): when a change moves the results, these tests name the stale text."""

from __future__ import annotations

import json
import re

from clipvideo.cli.experiments import marked
from tests.conftest import REPO, VARIANTS


def committed(metric: str) -> dict[str, float]:
    return {v: json.loads((REPO / "metrics" / f"{v}.json").read_text())[metric] for v in VARIANTS}


def summary_rows() -> dict[str, list[str]]:
    """metrics/summary.md's results table: variant -> its cells, ranked on val."""
    lines = (REPO / "metrics" / "summary.md").read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("| variant | val f1_micro"))) + 2
    table = lines[start : lines.index("", start)]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table]
    return {row[0]: row[1:] for row in rows}


def flat(text: str) -> str:
    """Markdown text with its line breaks as spaces, so a sentence is found wherever the page wraps it."""
    return " ".join(text.split())


def test_the_readme_and_models_page_quote_the_committed_choice_range_and_zeroshot() -> None:
    f1, rows = committed("f1_micro"), summary_rows()
    trained = [f1[v] for v, spec in VARIANTS.items() if spec.kind != "zeroshot"]
    span = f"{min(trained):.3f} to {max(trained):.3f}"
    chosen = next(iter(rows))
    assert rows[chosen][-1] == "chosen"
    n_test = int(re.search(r"Test videos: (\d+) ", (REPO / "metrics" / "summary.md").read_text())[1])

    readme = flat((REPO / "README.md").read_text())
    row = (
        f"| offline sample (default) | {n_test} test videos, untrained encoder | chosen on val: {chosen}, "
        f"{f1[chosen]:.3f} on test; trained variants {span}; zeroshot {f1['zeroshot']:.3f} |"
    )
    assert row in readme
    models = flat((REPO / "docs" / "models.md").read_text())
    assert (
        f"On the offline sample ({n_test} test videos, untrained encoder) val chose {chosen}, whose test f1_micro "
        f"is {f1[chosen]:.3f}; the trained variants score {span} on test, and zeroshot {f1['zeroshot']:.3f}: "
        f"one video is {1 / n_test:.3f} of f1_micro there"
    ) in models


def test_the_experiments_table_shows_the_committed_metrics_for_the_workspace_and_its_commit() -> None:
    """The sweep's table in docs/experiments.md: its workspace and commit rows are the default run's results."""
    page = (REPO / "docs" / "experiments.md").read_text()
    f1, val = committed("f1_micro"), committed("val_f1_micro")
    expected = [value.strip() for value in marked([f1[v] for v in VARIANTS], [val[v] for v in VARIANTS])]
    for row in ("workspace", "main"):
        shown = re.search(rf"^{row} +(.+)$", page, re.MULTILINE)
        assert shown and shown[1].split() == expected, f"docs/experiments.md, row {row}: {shown and shown[1]}"
