"""Real DVC: every variant has metrics, and a transformer param change reruns only the transformer variants."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipvideo.config.variants import train_stage_name
from tests.conftest import VARIANTS, stages_that_ran, write_params
from tests.conftest import run_command as run

pytestmark = pytest.mark.slow

TRAINED = {"train_transformer@transformer", "train_mixup_transformer@transformer-mixup"}  # dvc.yaml, the stages by kind
TRANSFORMER_STAGES = {
    *TRAINED,
    "evaluate@transformer",
    "evaluate@transformer-mixup",
}


def test_all_variants_reported_and_transformer_params_rerun_only_transformers(
    reproduced_repo: tuple[Path, str], dvc_repo: Path
):
    reproduced = dvc_repo
    first = stages_that_ran(reproduced_repo[1])
    assert {train_stage_name(v, VARIANTS) for v in VARIANTS} | {f"evaluate@{v}" for v in VARIANTS} <= first
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], reproduced))
    files = next(iter(shown.values()))["data"]
    assert {Path(name).stem for name in files} == set(VARIANTS) | {"leakage"}
    summary = (reproduced / "metrics" / "summary.md").read_text()
    assert all(f"| {variant} |" in summary for variant in VARIANTS)
    assert {path.stem for path in (reproduced / "reports").iterdir()} == set(VARIANTS) | {"leakage"}

    status = json.loads(run(["dvc", "status", "--json"], reproduced))
    assert status == {}

    write_params(reproduced, {**json.loads(json.dumps(read_overrides(reproduced))), "train.transformer.dropout": 0.3})
    status = json.loads(run(["dvc", "status", "--json"], reproduced))
    # only their own params changed (check_params declares the whole file: it checks every change)
    assert set(status) == {"check_params", *TRAINED}

    experiment = run(["dvc", "exp", "run"], reproduced)
    ran = stages_that_ran(experiment)
    assert TRAINED <= ran <= TRANSFORMER_STAGES | {"check_params", "report"}

    shown = run(["dvc", "exp", "show", "--no-pager", "--md"], reproduced)
    assert "metrics/transformer.json:f1_micro" in shown
    changed = {name for name, rows in json.loads(run(["dvc", "metrics", "diff", "--json"], reproduced)).items() if rows}
    assert changed <= {"metrics/transformer.json", "metrics/transformer-mixup.json"}  # on 4 test videos, often none
    changed_files = set(run(["git", "diff", "--name-only"], reproduced).split())
    # the transformers' results did change (their log loss at least); nobody else's
    assert {name for name in changed_files if name.startswith("reports/")} == {
        "reports/transformer.json",
        "reports/transformer-mixup.json",
    }
    assert "train.transformer.dropout" in shown


def read_overrides(root: Path) -> dict:
    """The repo's current params as dotted overrides for write_params (which starts from REPO's file)."""
    import yaml

    def flat(node: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in node.items():
            out |= flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
        return out

    return flat(yaml.safe_load((root / "params.yaml").read_text()))
