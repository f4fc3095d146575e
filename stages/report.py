"""report: one table of every evaluated variant, best first -> metrics/summary.md."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from clipvideo.cli import stage_main
from clipvideo.errors import PipelineError
from clipvideo.files import write_text_atomic
from clipvideo.paths import ProjectPaths

SECTIONS: tuple[str, ...] = ()


def interval(values: list[float]) -> str:
    return f"[{values[0]:.3f}, {values[1]:.3f}]" if values else "-"


def summary_table(results: list[dict[str, Any]]) -> str:
    """Markdown: variants best first, with intervals, and which gaps are inside the noise."""
    ranked = sorted(results, key=lambda m: (-m["f1_micro"], m["variant"]))
    lines = [
        "# Results",
        "",
        f"Test videos: {ranked[0]['n_test']}. Encoder: {ranked[0].get('encoder', '')}.",
        "",
        f"| variant | f1_micro | {round(ranked[0]['confidence'] * 100)}% interval | f1_macro | accuracy "
        "| balanced accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for m in ranked:
        lines.append(
            f"| {m['variant']} | {m['f1_micro']:.3f} | {interval(m['f1_micro_ci'])} | {m['f1_macro']:.3f} "
            f"| {m['accuracy']:.3f} | {m['balanced_accuracy']:.3f} |"
        )
    best = ranked[0]
    tied = [m["variant"] for m in ranked[1:] if best["f1_micro_ci"] and m["f1_micro"] >= best["f1_micro_ci"][0]]
    lines += ["", f"Best: {best['variant']}."]
    if tied:
        lines.append(f"Inside the noise of the best (f1_micro within its interval): {', '.join(tied)}.")
    return "\n".join(lines) + "\n"


def run(paths: ProjectPaths, _: dict[str, Any], __: argparse.Namespace) -> str:
    files = sorted(paths.metrics_dir.glob("*.json"))
    if not files:
        raise PipelineError(f"{paths.metrics_dir}: no metrics files; run the evaluate stages first")
    results = [json.loads(f.read_text(encoding="utf-8")) for f in files]
    text = summary_table(results)
    write_text_atomic(paths.summary, text)
    print(text)
    return f"{len(results)} variants -> {paths.summary}"


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("report", __doc__, SECTIONS, run, argv)


if __name__ == "__main__":
    sys.exit(main())
