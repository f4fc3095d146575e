"""Each stage entry point called as a plain function on a shrunk project (real ffmpeg, open_clip)."""

from __future__ import annotations

import csv
import json

import numpy as np

from clipvideo.core.paths import ProjectPaths
from clipvideo.video.fingerprint import decoder_fingerprint
from stages import check_leakage, embed, embed_text, evaluate, frames, report, split, train
from tests.conftest import VARIANTS, write_params


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_sample_manifest_and_download(downloaded_sample):
    paths = ProjectPaths(downloaded_sample)
    manifest = read_csv(paths.manifest)
    assert len(manifest) == 12
    assert {row["category"] for row in manifest} == {"food", "art_music", "travel", "history"}
    assert all(row["status"] == "valid" for row in manifest)
    videos = read_csv(paths.videos_table)
    assert [row["id"] for row in videos] == [row["id"] for row in manifest]
    assert all(row["status"] == "ok" for row in videos)
    for row in videos:
        assert (downloaded_sample / row["path"]).stat().st_size == int(row["bytes"])
        assert 2 <= float(row["duration_s"]) <= 4.1


def test_downstream_stages_end_to_end(project, shrunk_params):
    write_params(project.root, shrunk_params)
    root = ["--root", str(project.root)]
    assert frames.main(root) == 0
    rows = read_csv(project.frames_table)
    assert len(rows) == 12 and all(row["status"] == "ok" and row["n_frames"] == "4" for row in rows)
    assert sorted(p.name for p in project.frames_dir.iterdir()) == sorted(
        [f"{row['id']}.npz" for row in rows] + ["settings.json"]
    )
    made_with = json.loads(project.frames_settings.read_text())
    assert made_with == {"frames_count": 4, "frames_size": 64, "frames_mode": "exact", "decoder": decoder_fingerprint()}

    assert embed.main(root) == 0
    assert embed_text.main(root) == 0
    array = np.load(project.embeddings_dir / "frames.npy")
    assert array.dtype == np.float16 and array.shape == (12, 4, 32)
    assert np.isfinite(array).all()

    assert split.main(root) == 0
    parts = read_csv(project.split_table)
    assert sum(row["split"] == "test" for row in parts) == 4 and sum(row["split"] == "val" for row in parts) == 4
    assert check_leakage.main(root) == 0
    assert json.loads(project.leakage_metrics.read_text()) == {"near_duplicates": 0, "n_test": 4}

    for variant in VARIANTS:
        assert train.main([*root, variant]) == 0
        assert evaluate.main([*root, variant]) == 0
        found = json.loads(project.report_file(variant).read_text())
        assert found["n_test"] == 4 and set(found["per_class"]) == {"food", "art_music", "travel", "history"}
        assert sum(c["support"] for c in found["per_class"].values()) == 4
        confusion = read_csv(project.confusion_file(variant))
        assert confusion == found["predictions"]
        agreeing = sum(row["actual"] == row["predicted"] for row in confusion)
        assert len(confusion) == 4 and found["accuracy"] == found["f1_micro"] == round(agreeing / 4, 4)
        assert json.loads(project.metrics_file(variant).read_text()) == {
            "f1_micro": found["f1_micro"],
            "f1_macro": found["f1_macro"],
            "n_test": 4,
            "val_f1_micro": found["val_f1_micro"],
        }
        assert found["scored_on"] == "test" and found["n_test_missing"] == 0 and len(found["test_set"]) == 12
    assert report.main(root) == 0
    summary = project.summary.read_text()
    assert all(f"| {variant} |" in summary for variant in VARIANTS)


def test_report_refuses_a_missing_variant_and_ignores_stray_files(project, shrunk_params, capsys):
    write_params(project.root, shrunk_params)
    project.reports_dir.mkdir(parents=True)
    (project.reports_dir / "old-experiment.json").write_text("{}")
    assert report.main(["--root", str(project.root)]) == 2
    assert "reports/linear.json: missing; run `dvc repro evaluate@linear` first" in capsys.readouterr().err


def test_an_undecodable_video_is_an_error_row_and_the_stage_succeeds(project, shrunk_params):
    write_params(project.root, shrunk_params)
    videos = read_csv(project.videos_table)
    broken = videos[0]
    (project.root / broken["path"]).write_bytes(np.random.default_rng(0).bytes(50_000))
    assert frames.main(["--root", str(project.root)]) == 0
    rows = {row["id"]: row for row in read_csv(project.frames_table)}
    assert rows[broken["id"]]["status"] == "error" and rows[broken["id"]]["reason"]
    assert not (project.frames_dir / f"{broken['id']}.npz").exists()
    assert sum(row["status"] == "ok" for row in rows.values()) == len(videos) - 1


def test_too_few_surviving_videos_fail_the_stage_with_one_line(project, shrunk_params, capsys):
    write_params(project.root, {**shrunk_params, "frames.min_videos": 13})
    assert frames.main(["--root", str(project.root)]) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("frames: error: only 12 videos gave frames")
    assert "frames.min_videos=13" in message
