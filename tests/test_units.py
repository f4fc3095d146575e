"""Small pure pieces: frame times, ids, the split, the sample generator, the ffmpeg binary."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from clipvideo import ffmpeg
from clipvideo.errors import PipelineError
from clipvideo.manifest import is_safe_id, url_id
from clipvideo.sample import generate_sample
from clipvideo.video import sample_frame_times
from stages.split import stratified_split


def test_frame_times_are_evenly_spaced_inside_the_video():
    times = sample_frame_times(10.0, 4)
    np.testing.assert_allclose(times, [1.25, 3.75, 6.25, 8.75])
    assert np.allclose(np.diff(sample_frame_times(7.3, 16)), 7.3 / 16)


def test_ids_are_file_name_safe():
    assert is_safe_id("dQw4w9WgXcQ") and is_safe_id(url_id("https://example.com/a.mp4"))
    for bad in ("../../x", "a/b", "", "x" * 200, "abc; rm -rf /", "dQw4w9WgXc"):
        assert not is_safe_id(bad)
    assert url_id("a") != url_id("b") and url_id("a") == url_id("a")


def rows(per_category: dict[str, int]) -> list[dict[str, str]]:
    return [{"id": f"{c}{i:03d}", "category": c} for c, n in per_category.items() for i in range(n)]


def test_split_is_stratified_and_seeded():
    videos = rows({"food": 8, "travel": 8, "history": 4})
    first = stratified_split(videos, 0.25, seed=3)
    assert first == stratified_split(list(reversed(videos)), 0.25, seed=3)
    assert first != stratified_split(videos, 0.25, seed=4)
    test = Counter(r["category"] for r in first if r["split"] == "test")
    assert test == {"food": 2, "travel": 2, "history": 1}


def test_split_refuses_what_cannot_be_stratified():
    with pytest.raises(PipelineError, match="'solo'"):
        stratified_split(rows({"food": 4, "solo": 1}), 0.25, seed=0)
    with pytest.raises(PipelineError, match=r"split\.test_size"):
        stratified_split(rows({"food": 2, "travel": 2}), 0.9, seed=0)


def test_sample_is_deterministic_for_a_seed(tmp_path: Path):
    def render(out: Path, seed: int) -> list[str]:
        videos = generate_sample(out, ["food", "history"], 1, 1, 2, seed)
        return [hashlib.sha256(v.path.read_bytes()).hexdigest() for v in videos]

    assert render(tmp_path / "a", 5) == render(tmp_path / "b", 5)
    assert render(tmp_path / "c", 6) != render(tmp_path / "a", 5)


def test_sample_rejects_categories_it_cannot_render(tmp_path: Path):
    with pytest.raises(PipelineError, match=r"dataset\.categories"):
        list(generate_sample(tmp_path, ["sports", "food"], 1, 1, 2, 0))


def test_ffmpeg_falls_back_to_the_wheel_binary(monkeypatch: pytest.MonkeyPatch):
    ffmpeg.ffmpeg_binary.cache_clear()
    monkeypatch.setattr(ffmpeg.shutil, "which", lambda name: None)
    try:
        assert "imageio_ffmpeg" in ffmpeg.ffmpeg_binary()
        assert Path(ffmpeg.ffmpeg_binary()).is_file()
    finally:
        ffmpeg.ffmpeg_binary.cache_clear()
