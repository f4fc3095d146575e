"""variants.yaml is the one definition of the variants: dvc.yaml, README and the code follow it; a variant
reads only the params it declares."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from clipvideo.config.declared import Declared
from clipvideo.config.loading import load_params
from clipvideo.config.variants import Variant, load_variants, train_stage_name
from clipvideo.core.errors import ParamsError
from clipvideo.evaluation.reference import load_reference
from clipvideo.modeling.data import LabelledSet
from clipvideo.modeling.training import fit
from tests.conftest import REPO, VARIANTS, write_params
from tools.generate import dvc_variant_stages, variants_table


def test_dvc_yaml_and_readme_follow_variants_yaml():
    assert dvc_variant_stages(VARIANTS) in (REPO / "dvc.yaml").read_text(), (
        "dvc.yaml's variant stages are stale: run `python -m tools.generate`"
    )
    table = variants_table(VARIANTS, load_reference(REPO / "reference.yaml"))
    assert table in (REPO / "docs" / "models.md").read_text(), (
        "docs/models.md's variants table is stale: run `python -m tools.generate`"
    )


def test_dvc_makes_a_train_and_an_evaluate_stage_per_variant_declaring_its_params():
    """What real DVC resolves from dvc.yaml: the stage names, each train stage's params, deps and outputs, and no
    stage listing a dep, an out or a param twice (nor, so, dvc.lock)."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        stages = {stage.addressing: stage for stage in repo.index.stages}
        for name, variant in VARIANTS.items():
            train = stages[train_stage_name(name, VARIANTS)]
            assert f"evaluate@{name}" in stages and train.addressing.startswith("train")
            declared = [key for dep in train.params for key in dep.params]
            assert sorted(declared) == sorted(variant.params)
            data = {dep.def_path for dep in train.deps if dep not in train.params}
            assert ("data/text" in data) == (variant.kind == "zeroshot")
            # its model, cached; its curve, in git, only when it has one (logreg and zeroshot, fitted in one go)
            outs = {out.def_path: out.use_cache for out in train.outs}
            assert outs == {
                f"models/{name}.pt": True,
                **({f"plots/train/{name}.csv": False} if variant.has_curve else {}),
            }
        trained = [s.split("@")[1] for s in stages if s.startswith("train")]
        evaluated = [s.split("@")[1] for s in stages if s.startswith("evaluate@")]
        assert sorted(trained) == sorted(VARIANTS) == sorted(evaluated)
        for address, stage in stages.items():
            paths = [dep.def_path for dep in stage.deps if dep not in stage.params] + [o.def_path for o in stage.outs]
            keys = [key for dep in stage.params for key in (dep.params or [])]
            assert len(paths) == len(set(paths)) and len(keys) == len(set(keys)), address


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
    undeclared_mixup = Variant(kind="linear", mixup=True, one_frame=False, params=["train.seed", "train.optim"])
    params = Declared(load_params(REPO / "params.yaml"), undeclared_mixup.params, "variants.yaml: broken")
    data = toy_set()
    with pytest.raises(ParamsError, match=r"^variants.yaml: broken reads train.mixup, which it does not declare$"):
        fit(undeclared_mixup, data, data.frames, data.mask, params)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"kind": "svm"}, "variants.yaml: linear.kind='svm': expected one of linear, transformer, logreg, zeroshot"),
        ({"colour": "red"}, "variants.yaml: unknown key linear.colour; a variant takes kind, mixup, one_frame,"),
        ({"params": ["train.seed", "train.optimizer"]}, "variants.yaml: linear.params: 'train.optimizer' is not a key"),
        ({"params": ["train.seed", "train.seed"]}, "variants.yaml: linear.params: a key is listed twice"),
        ({"params": []}, "variants.yaml: linear.params=[]: expected a list of distinct params.yaml keys"),
        (
            {"kind": "logreg", "params": ["train.optim"]},
            "variants.yaml: logreg and linear would share the train stage train_logreg but read different things",
        ),
        ({"reference_f1_micro": 0.9}, "variants.yaml: unknown key linear.reference_f1_micro; a variant takes kind,"),
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


GOOD_VARIANTS = (REPO / "variants.yaml").read_text()
LINEAR = GOOD_VARIANTS[GOOD_VARIANTS.index("  linear:\n") : GOOD_VARIANTS.index("  linear-mixup:\n")]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "variants.yaml: empty; expected `variants:`, a mapping of variant names to their sections"),
        (GOOD_VARIANTS + LINEAR, "variants.yaml:{line}: key 'linear' is given twice"),
        (GOOD_VARIANTS.replace("  logreg:", "  ../../etc:"), "variants.yaml: variant '../../etc': expected lower-case"),
        (
            GOOD_VARIANTS.replace("kind: logreg", "kind: svm"),
            "variants.yaml: logreg.kind='svm': expected one of linear, transformer, logreg, zeroshot",
        ),
        (GOOD_VARIANTS.replace("variants:", "variantz:", 1), "variants.yaml: missing key variants"),
        (None, "variants.yaml: a directory; expected a YAML file"),
    ],
)
def test_check_params_refuses_a_bad_variants_file_in_one_line(tmp_path, capsys, content, expected):
    """check_params is the first stage dvc.yaml runs: a bad variants.yaml stops the run there, not at train."""
    from stages import check_params

    write_params(tmp_path, {})
    (tmp_path / "variants.yaml").unlink()
    if content is None:
        (tmp_path / "variants.yaml").mkdir()
    else:
        (tmp_path / "variants.yaml").write_text(content)
    assert check_params.main(["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    line = len(GOOD_VARIANTS.splitlines()) + 1
    assert err.startswith("check_params: error: " + expected.format(line=line)) and err.count("\n") == 1, err
