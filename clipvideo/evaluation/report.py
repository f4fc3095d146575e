"""The report step: every evaluated variant from reports/<variant>.json, ranked on val (test is only reported), with
the test gap to the one val chose and its paired bootstrap interval -> metrics/summary.md (and, narrow, the
console); their test f1_micro with its interval -> plots/f1_micro.csv, the chart that compares them; each variant's
errors -> plots/errors/<variant>.png. The reference study's numbers stand beside ours only under its protocol."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from clipvideo.config.schema import EvaluateParams
from clipvideo.config.variants import Variant
from clipvideo.core.contracts import VARIANT_F1_COLUMNS
from clipvideo.core.errors import PipelineError
from clipvideo.core.files import write_text_atomic
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.tables import read_table, write_table
from clipvideo.evaluation.gallery import write_error_images
from clipvideo.evaluation.metrics import paired_difference_interval
from clipvideo.evaluation.reference import Reference, load_reference, protocol_differences


def interval(m: dict[str, Any], name: str) -> str:
    low, high = m[f"{name}_low"], m[f"{name}_high"]
    return "-" if low is None else f"[{low:.3f}, {high:.3f}]"


def gap_interval(values: list[float]) -> str:
    return f"[{values[0]:.3f}, {values[1]:.3f}]" if values else "-"


def predictions_of(report: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """id -> (actual, predicted) from a variant's report."""
    return {row["id"]: (row["actual"], row["predicted"]) for row in report["predictions"]}


def gaps_to_best(
    ranked: list[dict[str, Any]], predictions: dict[str, dict[str, tuple[str, str]]], evaluate: EvaluateParams
) -> dict[str, list[float]]:
    """Paired bootstrap interval of f1_micro(variant) - f1_micro(best) for every other variant."""
    best = ranked[0]["variant"]
    ids = sorted(predictions[best])
    categories = sorted({label for pair in predictions[best].values() for label in pair})
    truth = np.array([categories.index(predictions[best][i][0]) for i in ids])
    best_pred = np.array([categories.index(predictions[best][i][1]) for i in ids])
    gaps = {}
    for m in ranked[1:]:
        theirs = predictions[m["variant"]]
        if sorted(theirs) != ids:
            raise PipelineError(
                f"metrics: {m['variant']} and {best} were scored on different test videos; rerun dvc repro"
            )
        categories += sorted({p for _, p in theirs.values()} - set(categories))
        pred = np.array([categories.index(theirs[i][1]) for i in ids])
        gaps[m["variant"]] = paired_difference_interval(
            truth, pred, best_pred, evaluate.bootstrap, evaluate.confidence, evaluate.seed
        )
    return gaps


def verdict(gap: list[float]) -> str:
    if not gap:
        return "no interval (evaluate.bootstrap = 0)"
    return "inside the noise" if gap[0] <= 0 <= gap[1] else ("worse" if gap[1] < 0 else "better")


def rank(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best on val first (f1_micro on the val videos), ties in the order of variants.yaml: the choice never looks
    at test. Without val videos, the order of variants.yaml."""
    order = {m["variant"]: i for i, m in enumerate(results)}
    return sorted(results, key=lambda m: (-(m.get("val_f1_micro") or 0.0), order[m["variant"]]))


def per_class_table(ranked: list[dict[str, Any]]) -> list[str]:
    """f1 of every category per variant, and each category's test videos."""
    categories = list(ranked[0]["per_class"])
    lines = [
        "| variant | " + " | ".join(f"f1 {c}" for c in categories) + " |",
        "|---|" + "---|" * len(categories),
    ]
    lines += [
        f"| {m['variant']} | " + " | ".join(f"{m['per_class'][c]['f1']:.3f}" for c in categories) + " |" for m in ranked
    ]
    support = ", ".join(f"{c} {ranked[0]['per_class'][c]['support']}" for c in categories)
    return [*lines, "", f"Test videos per category: {support}."]


def reference_lines(ranked: list[dict[str, Any]], reference: Reference, differences: list[str]) -> list[str]:
    """Where the study's numbers stand, or why they do not."""
    if differences:
        return [
            f"The reference study's numbers ({reference.source}) are not shown: this run's protocol differs in "
            f"{'; '.join(differences)}."
        ]
    return [
        f"This run follows the reference study's protocol ({reference.source}); its f1_micro on its own "
        f"{reference.n_test} test videos stands in the last column (another split: the videos differ)."
    ]


def summary_table(
    ranked: list[dict[str, Any]],
    gaps: dict[str, list[float]],
    reference: Reference,
    differences: list[str],
    leakage: dict[str, Any],
) -> str:
    """Markdown: variants ranked on val, their test figures with intervals, which test gaps to the val choice are
    inside the noise, and the study's numbers where the protocols match."""
    best = ranked[0]
    percent = f"{round(best['confidence'] * 100)}%"
    shown = not differences
    lines = [
        "# Results",
        "",
        f"Test videos: {best['n_test']} (test set {best['test_set']}; {best['n_test_missing']} more without frames, "
        f"not scored). Encoder: {best.get('encoder', '')}.",
        "",
        "Ranked on val f1_micro (the choice); every other column is the test set's, only reported.",
        "",
        f"| variant | val f1_micro | f1_micro | {percent} interval | f1_macro | {percent} interval | accuracy "
        f"| balanced accuracy | gap to chosen, paired {percent} interval | vs chosen |"
        + (f" reference f1_micro ({reference.n_test} videos) |" if shown else ""),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if shown else ""),
    ]
    for m in ranked:
        gap = gaps.get(m["variant"], [])
        gap_text = "-" if m is best else f"{m['f1_micro'] - best['f1_micro']:+.3f} {gap_interval(gap)}"
        theirs = reference.f1_micro.get(m["variant"])
        val = "-" if m.get("val_f1_micro") is None else f"{m['val_f1_micro']:.3f}"
        lines.append(
            f"| {m['variant']} | {val} | {m['f1_micro']:.3f} | {interval(m, 'f1_micro')} | {m['f1_macro']:.3f} "
            f"| {interval(m, 'f1_macro')} | {m['accuracy']:.3f} | {m['balanced_accuracy']:.3f} | {gap_text} "
            f"| {'chosen' if m is best else verdict(gap)} |"
            + (f" {'-' if theirs is None else f'{theirs:.3f}'} |" if shown else "")
        )
    tied = [m["variant"] for m in ranked[1:] if verdict(gaps.get(m["variant"], [])) == "inside the noise"]
    lines += ["", f"Chosen on val: {best['variant']}."]
    if tied:
        lines.append(
            f"Not distinguishable from it on test (the paired interval of the f1_micro gap contains 0): "
            f"{', '.join(tied)}."
        )
    lines.append(f"One test video is {1 / best['n_test']:.3f} of f1_micro here.")
    lines += reference_lines(ranked, reference, differences)
    lines.append(
        f"Near-duplicates across sides: {leakage['near_duplicates']} of {leakage['n_test']} test videos have a "
        f"training video at cosine >= {leakage['cosine']} (reports/leakage.json)."
    )
    if any(m["variant"] == "zeroshot" and m.get("encoder_weights") == "none" for m in ranked):
        lines.append(
            "zeroshot compares frames with prompt embeddings of an untrained encoder: its text and image "
            f"spaces are unrelated, so it is at chance ({1 / len(best['per_class']):.2f} for "
            f"{len(best['per_class'])} categories) by construction; it means something only with pretrained weights."
        )
    lines += ["", "## Per category (test)", "", *per_class_table(ranked)]
    return "\n".join(lines) + "\n"


def console_table(ranked: list[dict[str, Any]], gaps: dict[str, list[float]]) -> str:
    """The summary in 80 columns for the console (the file keeps every column): val f1, test f1_micro, its
    interval, verdict."""
    best = ranked[0]
    width = max(len("variant"), *(len(m["variant"]) for m in ranked))
    percent = f"{round(best['confidence'] * 100)}% interval"
    lines = [f"{'variant':<{width}}  val f1  f1_micro  {percent:<14}  vs chosen"]
    for m in ranked:
        judged = "chosen" if m is best else verdict(gaps.get(m["variant"], []))
        val = "-" if m.get("val_f1_micro") is None else f"{m['val_f1_micro']:.3f}"
        lines.append(
            f"{m['variant']:<{width}}  {val:>6}  {m['f1_micro']:>8.3f}  {interval(m, 'f1_micro'):<14}  {judged}"
        )
    lines.append(f"{best['n_test']} test videos, one is {1 / best['n_test']:.3f} of f1_micro")
    return "\n".join(lines)


def video_titles(paths: ProjectPaths) -> dict[str, str]:
    """id -> title from the manifest, so the error images name videos as people know them."""
    return {row["id"]: row["title"] for row in read_table(paths.manifest, ("id", "title")) if row["title"]}


def write_report(paths: ProjectPaths, variants: dict[str, Variant], params: Any) -> str:
    """metrics/summary.md, plots/f1_micro.csv and plots/errors/ for exactly the variants of variants.yaml (a stray
    file in reports/ is not a result); prints the summary narrow, returns the summary line."""
    missing = [v for v in variants if not paths.report_file(v).is_file()]
    if missing:
        raise PipelineError(f"{paths.report_file(missing[0])}: missing; run `dvc repro evaluate@{missing[0]}` first")
    results = [json.loads(paths.report_file(v).read_text(encoding="utf-8")) for v in variants]
    test_sets = {m["test_set"] for m in results}
    if len(test_sets) > 1:
        raise PipelineError(f"report: the variants were scored on {len(test_sets)} test sets; rerun dvc repro")
    ranked = rank(results)
    predictions = {m["variant"]: predictions_of(m) for m in results}
    gaps = gaps_to_best(ranked, predictions, params.evaluate)
    reference = load_reference(paths.reference)
    differences = protocol_differences(reference, params)
    leakage = json.loads(paths.leakage_report.read_text(encoding="utf-8"))
    write_text_atomic(paths.summary, summary_table(ranked, gaps, reference, differences, leakage))
    write_table(paths.f1_plot, VARIANT_F1_COLUMNS, ({c: m[c] for c in VARIANT_F1_COLUMNS} for m in ranked))
    print(console_table(ranked, gaps))
    counts = write_error_images(paths.errors_dir, predictions, paths.frames_dir, video_titles(paths))
    return (
        f"{len(results)} variants -> {paths.summary}, {paths.f1_plot}; {sum(counts.values())} misclassified "
        f"videos -> {paths.errors_dir}"
    )
