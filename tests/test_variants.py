"""variants.yaml is the one definition of the variants: dvc.yaml, README and the code follow it; a variant
reads only the params it declares."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from clipvideo.config.declared import Declared
from clipvideo.config.loading import load_params
from clipvideo.config.variants import PARAM_SLOTS, Variant, load_variants
from clipvideo.core.errors import ParamsError
from clipvideo.modeling.data import LabelledSet
from clipvideo.modeling.training import fit
from tests.conftest import REPO, VARIANTS
from tools.generate import dvc_vars_block, variants_table


def test_dvc_yaml_and_readme_follow_variants_yaml():
    dvc_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text())
    declared = next(entry["variants"] for entry in dvc_yaml["vars"] if "variants" in entry)
    assert declared == {name: variant.dvc_slots(name) for name, variant in VARIANTS.items()}, (
        "dvc.yaml's variants are stale: run `python -m tools.generate`"
    )
    assert dvc_vars_block(VARIANTS) in (REPO / "dvc.yaml").read_text()
    assert variants_table(VARIANTS) in (REPO / "docs" / "models.md").read_text(), (
        "docs/models.md's variants table is stale: run `python -m tools.generate`"
    )


def test_dvc_makes_a_train_and_an_evaluate_stage_per_variant_declaring_its_params():
    """What real DVC resolves from dvc.yaml: the stage names, each train stage's params and outputs."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        stages = {stage.addressing: stage for stage in repo.index.stages}
        for name, variant in VARIANTS.items():
            assert {f"train@{name}", f"evaluate@{name}"} <= set(stages)
            declared = {key for dep in stages[f"train@{name}"].params for key in dep.params}
            assert declared == set(variant.params)
            # its model, cached; its curve, in git, only when it has one (logreg and zeroshot repeat the model)
            outs = {out.def_path: out.use_cache for out in stages[f"train@{name}"].outs}
            assert outs == {f"models/{name}.pt": True, **({f"plots/train/{name}.csv": False} if variant.has_curve
                                                             else {})}  # fmt: skip
        assert {s.split("@")[1] for s in stages if s.startswith(("train@", "evaluate@"))} == set(VARIANTS)


def toy_set(n: int = 12) -> LabelledSet:
    rng = np.random.default_rng(0)
    return LabelledSet(
        ids=[f"{i:016x}" for i in range(n)],
        frames=rng.normal(size=(n, 3, 8)).astype(np.float32),
        mask=np.ones((n, 3), dtype=bool),
        labels=np.arange(n) % 2,
        categories=["a", "b"],
        dropped=0,
    )


def test_a_variant_reading_a_param_it_does_not_declare_is_named():
    undeclared_mixup = Variant(kind="linear", mixup=True, one_frame=False, reference_f1_micro=None,
                               params=["seed", "train.optim"])  # fmt: skip
    params = Declared(load_params(REPO / "params.yaml"), undeclared_mixup.params, "variants.yaml: broken")
    data = toy_set()
    with pytest.raises(ParamsError, match=r"^variants.yaml: broken reads train.mixup, which it does not declare$"):
        fit(undeclared_mixup, data, data.frames, data.mask, params)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"kind": "svm"}, "variants.yaml: linear.kind: Input should be 'linear', 'transformer', 'logreg' or"),
        ({"colour": "red"}, "variants.yaml: linear.colour: Extra inputs are not permitted"),
        ({"params": ["seed", "train.optimizer"]}, "variants.yaml: linear.params: 'train.optimizer' is not a key"),
        ({"params": ["seed", "seed"]}, "variants.yaml: linear.params: a key is listed twice"),
        (
            {"params": ["seed", "train.optim", "train.mixup", "train.transformer", "frames"][: PARAM_SLOTS + 1]},
            f"variants.yaml: linear.params: List should have at most {PARAM_SLOTS} items",
        ),
        ({"reference_f1_micro": 2}, "variants.yaml: linear.reference_f1_micro: Input should be less than or equal"),
    ],
)
def test_a_bad_variants_file_is_one_line(tmp_path, change, expected):
    content = yaml.safe_load((REPO / "variants.yaml").read_text())
    content["variants"]["linear"].update(change)
    path = tmp_path / "variants.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ParamsError) as error:
        load_variants(path)
    assert str(error.value).startswith(expected) and "\n" not in str(error.value)


def test_a_variant_name_must_be_a_safe_stage_and_file_name(tmp_path):
    content = yaml.safe_load((REPO / "variants.yaml").read_text())
    content["variants"]["../linear"] = content["variants"].pop("linear")
    path = tmp_path / "variants.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ParamsError, match=r"^variants.yaml: variant '../linear': expected lower-case letters"):
        load_variants(path)
