"""The eight variants: padding mask, stable frame choice, mixup, logreg folding, zeroshot, determinism, stages."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from clipvideo.core.contracts import DVC_METRICS
from clipvideo.embed.encoder import load_encoder
from clipvideo.embed.prompts import category_prompts, embed_prompts
from clipvideo.embed.store import load_text_embeddings
from clipvideo.modeling.classifiers import (
    LinearProbe,
    TransformerProbe,
    one_frame_view,
    predict_proba,
    stable_frame_index,
    zeroshot_model,
)
from clipvideo.modeling.saved import load_model
from clipvideo.modeling.training import Held, TrainConfig, best_epoch, fit_logreg, mixup_batch, train_classifier
from stages import evaluate, report, train
from tests.conftest import REPO, VARIANTS


def padded_batch(lengths: list[int], dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random sequences, padded to the longest with large garbage (not zeros) so leaks would show."""
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randn(len(lengths), max(lengths), dim, generator=generator)
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    frames[~mask] = 1000 * torch.randn(int((~mask).sum()), dim, generator=generator)
    return frames, mask


@pytest.mark.parametrize("layers", [1, 2])
def test_transformer_padded_batch_equals_each_sequence_alone(layers):
    torch.manual_seed(0)
    model = TransformerProbe(dim=32, n_classes=4, layers=layers, heads=4, dropout=0.1, ff_dim=64).eval()
    lengths = [6, 3, 1, 6]
    frames, mask = padded_batch(lengths, 32, seed=1)
    with torch.inference_mode():
        batched = model(frames, mask)
        alone = torch.cat([model(frames[i : i + 1, :n], mask[i : i + 1, :n]) for i, n in enumerate(lengths)])
        garbage_changed = frames.clone()
        garbage_changed[~mask] = -garbage_changed[~mask]
        rebatched = model(garbage_changed, mask)
        real_changed = frames.clone()
        real_changed[1, 0] += 1.0
        moved = model(real_changed, mask)
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rebatched, batched, atol=1e-5, rtol=1e-5)  # padded frames are ignored
    assert not torch.allclose(moved[1], batched[1], atol=1e-4)  # real frames are not
    torch.testing.assert_close(moved[[0, 2, 3]], batched[[0, 2, 3]], atol=1e-5, rtol=1e-5)


def test_transformer_heads_must_divide_the_embedding_size():
    with pytest.raises(Exception, match=r"train\.transformer\.heads=5"):
        TransformerProbe(dim=32, n_classes=4, layers=1, heads=5, dropout=0.0, ff_dim=32)


def test_linear_probe_ignores_padding():
    torch.manual_seed(0)
    model = LinearProbe(16, 3).eval()
    frames, mask = padded_batch([4, 2], 16, seed=2)
    with torch.inference_mode():
        torch.testing.assert_close(model(frames[1:, :2], mask[1:, :2]), model(frames, mask)[1:])


def test_stable_frame_index_is_fixed_across_processes_and_hash_seeds():
    assert [stable_frame_index("dQw4w9WgXcQ", 16), stable_frame_index("0123456789abcdef", 7)] == [14, 3]
    code = (
        "from clipvideo.modeling.classifiers import stable_frame_index as s; "
        "print(s('dQw4w9WgXcQ', 16), s('0123456789abcdef', 7))"
    )
    for hash_seed in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        assert result.stdout.split() == ["14", "3"]


def test_one_frame_view_picks_the_stable_real_frame():
    ids = [f"{i:016x}" for i in range(40)]
    n_frames = np.array([1 + i % 5 for i in range(40)])
    mask = np.arange(5)[None, :] < n_frames[:, None]
    frames = np.zeros((40, 5, 2), dtype=np.float16)
    frames[:, :, 0] = np.arange(5)  # each frame carries its own index
    picked, picked_mask = one_frame_view(frames, mask, ids)
    assert picked.shape == (40, 1, 2) and picked_mask.all()
    expected = [stable_frame_index(v, n) for v, n in zip(ids, n_frames, strict=True)]
    assert picked[:, 0, 0].tolist() == expected
    assert all(e < n for e, n in zip(expected, n_frames, strict=True))  # never a padded frame
    assert len(set(expected)) > 1  # not always the first frame


def test_mixup_mixes_frames_and_unions_masks():
    frames, mask = padded_batch([4, 2, 1], 8, seed=3)
    frames[~mask] = 0
    rng = np.random.default_rng(7)
    mixed, mixed_mask, perm, lam = mixup_batch(frames, mask, 0.4, rng, torch.Generator().manual_seed(7))
    assert 0 <= lam <= 1
    torch.testing.assert_close(mixed, lam * frames + (1 - lam) * frames[perm])
    assert torch.equal(mixed_mask, mask | mask[perm])
    assert sorted(perm.tolist()) == [0, 1, 2]
    again = mixup_batch(frames, mask, 0.4, np.random.default_rng(7), torch.Generator().manual_seed(7))
    assert again[3] == lam and torch.equal(again[2], perm)
    lams = [mixup_batch(frames, mask, 0.4, rng, torch.Generator())[3] for _ in range(200)]
    assert np.mean(lams) == pytest.approx(0.5, abs=0.08)  # Beta(a, a) is symmetric about 1/2


def toy_data(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centers = rng.normal(size=(classes, 16))
    frames = centers[labels][:, None, :] + 0.5 * rng.normal(size=(n, 5, 16))
    mask = np.arange(5)[None, :] < rng.integers(2, 6, size=n)[:, None]
    return frames.astype(np.float32), mask, labels


@pytest.mark.parametrize("mixup_alpha", [None, 0.4])
def test_training_is_deterministic_and_learns(mixup_alpha):
    frames, mask, labels = toy_data(40, 4, seed=0)
    config = TrainConfig(epochs=15, lr=0.01, weight_decay=1e-4, batch_size=8, seed=3, mixup_alpha=mixup_alpha)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = TransformerProbe(16, 4, layers=1, heads=2, dropout=0.1, ff_dim=32)
        runs.append((train_classifier(model, frames, mask, labels, config), model.state_dict()))
    (history, weights), (history_again, weights_again) = runs
    assert history == history_again
    assert all(torch.equal(weights[k], weights_again[k]) for k in weights)
    assert [row["epoch"] for row in history] == list(range(1, 16))
    assert history[-1]["f1"] > 0.9


def test_the_epoch_kept_is_the_best_on_val_and_test_is_never_read():
    frames, mask, labels = toy_data(40, 4, seed=0)
    val_frames, val_mask, val_labels = toy_data(24, 4, seed=5)
    val = Held(val_frames, val_mask, np.roll(val_labels, 1))  # val labels that disagree: its best is not the last
    config = TrainConfig(epochs=12, lr=0.05, weight_decay=1e-4, batch_size=8, seed=3)
    torch.manual_seed(0)
    model = LinearProbe(16, 4)
    history = train_classifier(model, frames, mask, labels, config, val)
    kept = best_epoch(history)
    assert kept < 12 and all(isinstance(row["val_f1"], float) for row in history)
    assert history[kept - 1]["val_f1"] == max(row["val_f1"] for row in history)
    torch.manual_seed(0)
    shorter = LinearProbe(16, 4)  # the same training stopped at the kept epoch: the same weights, bit for bit
    train_classifier(shorter, frames, mask, labels, TrainConfig(**{**config.__dict__, "epochs": kept}), val)
    assert all(torch.equal(model.state_dict()[k], shorter.state_dict()[k]) for k in model.state_dict())


def test_best_epoch_breaks_ties_on_val_loss_then_takes_the_earliest():
    rows = [
        {"epoch": e, "val_f1": f, "val_loss": loss}
        for e, f, loss in [(1, 0.5, 0.9), (2, 0.75, 0.6), (3, 0.75, 0.5), (4, 0.75, 0.5), (5, 0.5, 0.1)]
    ]
    assert best_epoch(rows) == 3
    assert best_epoch([{"epoch": e, "val_f1": "", "val_loss": ""} for e in (1, 2, 3)]) == 3  # no val: the last


@pytest.mark.parametrize("classes", [2, 4])
def test_logreg_module_gives_scikit_learn_probabilities(classes):
    frames, mask, labels = toy_data(30, classes, seed=1)
    model = fit_logreg(frames, mask, labels, classes, c=0.5, max_iter=500)
    normalised = frames / np.linalg.norm(frames, axis=-1, keepdims=True)
    features = (normalised * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    probabilities = predict_proba(model, frames, mask)
    # scikit-learn's own solve to its default tolerance (gtol 1e-4) and to the optimum both fitted models approach
    default = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=500)).fit(features, labels)
    np.testing.assert_allclose(probabilities, default.predict_proba(features), atol=1e-3)
    assert probabilities.argmax(1).tolist() == default.predict(features).tolist()
    tight = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=10_000, tol=1e-10)).fit(features, labels)
    np.testing.assert_allclose(probabilities, tight.predict_proba(features), atol=1e-5)


def test_zeroshot_picks_the_nearest_prompt():
    text = np.eye(3, 8, dtype=np.float32) * 5
    e = np.eye(3, 8, dtype=np.float32)
    frames = np.stack([[e[2], 3 * e[2]], [e[0], e[0] + 0.5 * e[1]]])  # video 2: mostly category 0
    probabilities = predict_proba(zeroshot_model(text), frames, np.ones((2, 2), dtype=bool))
    assert probabilities.argmax(1).tolist() == [2, 0]
    assert probabilities.sum(1) == pytest.approx([1, 1])
    assert category_prompts("a video about {category}", ["art_music"]) == ["a video about art music"]


def test_prompt_ensemble_is_open_clips_zero_shot_classifier(tiny_model_config):
    """Several templates: each prompt embedding normalised, averaged per category, normalised again."""
    import open_clip
    from open_clip.zero_shot_classifier import build_zero_shot_classifier

    encoder = load_encoder(str(tiny_model_config), "none", seed=3)
    templates = ["a video about {category}", "a photo of {category}.", "{category}"]
    categories = ["art_music", "food", "travel"]
    ours = embed_prompts(encoder, templates, categories, {"seed": 3})
    reference = build_zero_shot_classifier(
        encoder.model,
        open_clip.get_tokenizer(encoder.name),
        [c.replace("_", " ") for c in categories],
        [t.replace("{category}", "{}") for t in templates],
    )
    np.testing.assert_allclose(ours.vectors, reference.T.numpy(), atol=1e-5)
    single = embed_prompts(encoder, templates[:1], categories, {"seed": 3}).vectors
    assert not np.allclose(single, ours.vectors) and np.allclose(np.linalg.norm(single, axis=1), 1)


def test_zeroshot_refuses_prompts_embedded_by_another_encoder(embedded, tmp_path, capsys):
    root = tmp_path / "copy"
    shutil.copytree(embedded.root, root)
    meta = root / "data" / "text" / "meta.json"
    recorded = json.loads(meta.read_text())
    meta.write_text(json.dumps({"encoder": {**recorded["encoder"], "seed": 99}}))
    assert train.main(["--root", str(root), "zeroshot"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("prompts embedded with embed.seed 99 (the frames': 42); rerun dvc repro")
    assert len(err.splitlines()) == 1


def test_every_variant_trains_evaluates_and_reruns_identically(embedded, tmp_path, capsys):
    root = ["--root", str(embedded.root)]
    text = load_text_embeddings(embedded.text_dir)
    assert text.templates == ["a video about {category}"] and text.vectors.shape == (4, 32)
    first = {}
    for variant in VARIANTS:
        assert train.main([*root, variant]) == 0
        assert evaluate.main([*root, variant]) == 0
        first[variant] = embedded.metrics_file(variant).read_text() + embedded.report_file(variant).read_text()
        metrics = json.loads(embedded.metrics_file(variant).read_text())
        assert list(metrics) == list(DVC_METRICS) and all(isinstance(v, int | float) for v in metrics.values())
        found = json.loads(embedded.report_file(variant).read_text())
        assert found["variant"] == variant and found["n_test"] == 4 and len(found["predictions"]) == 4
        assert {name: found[name] for name in DVC_METRICS} == metrics
        assert found["f1_micro_low"] <= found["f1_micro"] <= found["f1_micro_high"]
        assert found["f1_macro_low"] <= found["f1_macro"] <= found["f1_macro_high"]
        curve = embedded.training_curve_file(variant)
        if VARIANTS[variant].kind in ("logreg", "zeroshot"):  # fitted in one go: one point is no curve
            assert not curve.exists()
        else:
            lines = curve.read_text().splitlines()
            assert lines[0] == "epoch,loss,f1,val_loss,val_f1" and len(lines) == 6
        assert load_model(embedded.model_file(variant), variant).categories == sorted(found["per_class"])
        gpu = torch.cuda.is_available() and VARIANTS[variant].has_curve  # train.device: auto, the default
        assert found["selection"]["device"] == ("cuda" if gpu else "cpu")  # the report says where it trained
    for variant in VARIANTS:  # a rerun with the same params and seed: byte-identical metrics and reports
        assert train.main([*root, variant]) == 0
        assert evaluate.main([*root, variant]) == 0
        assert embedded.metrics_file(variant).read_text() + embedded.report_file(variant).read_text() == first[variant]
    capsys.readouterr()
    assert report.main(root) == 0
    *table, last = capsys.readouterr().out.splitlines()  # the console gets the summary narrow, then the line
    header = ["variant", "val", "f1", "f1_micro", "95%", "interval", "vs", "chosen"]
    assert table[0].split() == header and last.startswith("report: ")
    assert all(len(line) <= 80 for line in table) and table[-1] == "4 test videos, one is 0.250 of f1_micro"
    ranked = [line.split()[0] for line in table[1:-1]]
    assert sorted(ranked) == sorted(VARIANTS)
    with embedded.f1_plot.open(newline="") as handle:  # the chart comparing them: the same order, each interval
        plotted = list(csv.DictReader(handle))
    assert [row["variant"] for row in plotted] == ranked
    assert all(float(r["f1_micro_low"]) <= float(r["f1_micro"]) <= float(r["f1_micro_high"]) for r in plotted)
    summary = embedded.summary.read_text()
    assert all(f"| {variant} |" in summary for variant in VARIANTS)
    assert "zeroshot compares frames with prompt embeddings of an untrained encoder" in summary
    assert "| variant | f1 art_music | f1 food | f1 history | f1 travel |" in summary  # the per-class table


def test_train_device_auto_takes_the_gpu_only_where_there_is_one_and_cuda_without_one_is_one_line(
    tmp_path, embedded, capsys
):
    from clipvideo.core.system import torch_device

    assert torch_device("auto", "train.device").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert torch_device("cpu", "train.device").type == "cpu"
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: `cuda` is no error")  # CI has none; the GPU path is checked by hand
    root = tmp_path / "copy"
    shutil.copytree(embedded.root, root, ignore=shutil.ignore_patterns("models"))
    settings = root / "settings.yaml"
    settings.write_text(settings.read_text().replace("train:\n  device: auto", "train:\n  device: cuda"))
    assert train.main(["--root", str(root), "linear"]) == 2
    error = "train: error: settings.yaml: train.device='cuda': no CUDA device is available here\n"
    assert capsys.readouterr().err == error
    assert not (root / "models" / "linear.pt").exists()
    assert train.main(["--root", str(root), "logreg"]) == 0  # fitted in exact arithmetic on the CPU: no device


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "nonsense"], "unknown variant 'nonsense'; expected one of linear, linear-mixup"),
        (["evaluate", "transformer-mixup"], "no trained model for variant 'transformer-mixup'"),
    ],
)
def test_bad_variant_or_missing_model_is_one_line(tmp_path, embedded, capsys, argv, message):
    root = tmp_path / "copy"
    shutil.copytree(embedded.root, root, ignore=shutil.ignore_patterns("models"))
    stage = {"train": train, "evaluate": evaluate}[argv[0]]
    assert stage.main(["--root", str(root), argv[1]]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
