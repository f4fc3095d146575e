"""The error images: what each row shows, the cap, unreadable frames, and byte-identical output."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipvideo.evaluation import gallery
from clipvideo.video.store import SampledFrames, save_frames

COLOURS = [
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (0, 255, 255),
    (255, 0, 255),
    (128, 0, 0),
    (0, 128, 0),
    (0, 0, 128),
    (128, 128, 0),
]


def store_frames(frames_dir: Path, video_id: str, colours: list[tuple[int, int, int]], size: int = 32) -> None:
    """A frames file as the frames stage writes it: one flat-coloured frame per colour."""
    images = [np.full((size, size, 3), colour, dtype=np.uint8) for colour in colours]
    save_frames(frames_dir / f"{video_id}.npz", SampledFrames(images, [float(i) for i in range(len(images))], 4))


def decode(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png)).convert("RGB")


def png_chunks(png: bytes) -> list[str]:
    chunks, offset = [], 8
    while offset < len(png):
        length, kind = struct.unpack(">I4s", png[offset : offset + 8])
        chunks.append(kind.decode("ascii"))
        offset += 12 + length
    return chunks


def row_top(row: int) -> int:
    """Top pixel of row `row`'s thumbnails (below its label)."""
    row_height = gallery.LINE + gallery.THUMB + 2 * gallery.GAP
    return gallery.MARGIN + gallery.LINE + gallery.GAP + row * row_height + gallery.LINE


def thumb_centre(image: Image.Image, row: int, column: int) -> tuple[int, int, int]:
    x = gallery.MARGIN + column * (gallery.THUMB + gallery.GAP) + gallery.THUMB // 2
    return image.getpixel((x, row_top(row) + gallery.THUMB // 2))


def close(pixel: tuple[int, int, int], colour: tuple[int, int, int]) -> bool:
    return max(abs(a - b) for a, b in zip(pixel, colour, strict=True)) <= 12  # JPEG round trip, 256 colours


def test_rows_show_the_misclassified_videos_frames_in_id_order(tmp_path: Path) -> None:
    store_frames(tmp_path, "bbbbbbbbbbb", COLOURS[:3])
    store_frames(tmp_path, "aaaaaaaaaaa", COLOURS[3:5])
    predictions = {"bbbbbbbbbbb": ("food", "travel"), "aaaaaaaaaaa": ("art_music", "food"), "ccccccccccc": ("x", "x")}
    image = decode(gallery.render_errors("linear", predictions, tmp_path, {}))
    assert image.width == gallery.WIDTH
    assert [close(thumb_centre(image, 0, k), c) for k, c in enumerate(COLOURS[3:5])] == [True, True]
    assert [close(thumb_centre(image, 1, k), c) for k, c in enumerate(COLOURS[:3])] == [True, True, True]
    assert close(thumb_centre(image, 1, 3), gallery.BACKGROUND)  # three frames: the rest of the row is empty


def test_long_videos_show_evenly_picked_frames_first_and_last_included(tmp_path: Path) -> None:
    store_frames(tmp_path, "aaaaaaaaaaa", COLOURS)  # 10 frames, 8 drawn
    image = decode(gallery.render_errors("linear", {"aaaaaaaaaaa": ("food", "travel")}, tmp_path, {}))
    drawn = [thumb_centre(image, 0, k) for k in range(gallery.MAX_FRAMES)]
    picked = gallery.evenly_picked(len(COLOURS))
    assert len(picked) == gallery.MAX_FRAMES and picked[0] == 0 and picked[-1] == len(COLOURS) - 1
    assert all(close(pixel, COLOURS[i]) for pixel, i in zip(drawn, picked, strict=True))


def test_rows_are_capped_and_the_image_says_how_many_more(tmp_path: Path) -> None:
    wrong = {f"{i:016x}": ("food", "travel") for i in range(gallery.MAX_ROWS + 3)}
    capped = decode(gallery.render_errors("linear", wrong, tmp_path, {}))
    exactly_max = decode(gallery.render_errors("linear", dict(list(wrong.items())[: gallery.MAX_ROWS]), tmp_path, {}))
    assert capped.height == exactly_max.height + gallery.LINE  # the same rows plus the "... and 3 more" line
    assert exactly_max.height == 2 * gallery.MARGIN + gallery.LINE + gallery.MAX_ROWS * (
        gallery.LINE + gallery.THUMB + 2 * gallery.GAP
    )


def test_a_variant_without_errors_gets_an_image_that_says_so(tmp_path: Path) -> None:
    image = decode(gallery.render_errors("linear", {"aaaaaaaaaaa": ("food", "food")}, tmp_path, {}))
    assert image.height == 2 * gallery.MARGIN + gallery.LINE
    assert len(set(image.getdata())) > 2  # the title text is drawn (anti-aliased grey levels)


@pytest.mark.parametrize(
    "video_id, content",
    [("aaaaaaaaaaa", None), ("aaaaaaaaaaa", b"not an npz"), ("../../etc/passwd", None)],
    ids=["missing", "corrupt", "unsafe id"],
)
def test_unreadable_frames_give_a_grey_row_not_an_error(tmp_path: Path, video_id: str, content: bytes | None) -> None:
    if content is not None:
        (tmp_path / f"{video_id}.npz").write_bytes(content)
    image = decode(gallery.render_errors("linear", {video_id: ("food", "travel")}, tmp_path, {}))
    assert close(thumb_centre(image, 0, gallery.MAX_FRAMES - 1), gallery.MISSING)


def test_a_frame_that_does_not_decode_is_a_grey_tile(tmp_path: Path) -> None:
    path = tmp_path / "aaaaaaaaaaa.npz"
    jpeg = np.frombuffer(b"\xff\xd8 broken", dtype=np.uint8)
    np.savez(path, jpeg=jpeg, offsets=np.array([0, len(jpeg)], dtype=np.int64), times=np.zeros(1))
    image = decode(gallery.render_errors("linear", {"aaaaaaaaaaa": ("food", "travel")}, tmp_path, {}))
    assert close(thumb_centre(image, 0, 0), gallery.MISSING)


def test_same_input_same_bytes_and_no_metadata(tmp_path: Path) -> None:
    store_frames(tmp_path, "aaaaaaaaaaa", COLOURS[:4])
    predictions = {"aaaaaaaaaaa": ("food", "travel")}
    first = gallery.render_errors("linear", predictions, tmp_path, {})
    assert gallery.render_errors("linear", predictions, tmp_path, {}) == first
    assert gallery.render_errors("linear", {"aaaaaaaaaaa": ("food", "history")}, tmp_path, {}) != first
    assert set(png_chunks(first)) == {"IHDR", "PLTE", "IDAT", "IEND"}  # no tIME, tEXt or other metadata chunk


def test_a_row_names_its_video_by_title_and_by_id_only_without_one(tmp_path: Path) -> None:
    """The caption's first words are the title where the manifest has one, in the place of the id."""
    store_frames(tmp_path, "aaaaaaaaaaa", COLOURS[:2])
    predictions = {"aaaaaaaaaaa": ("food", "travel")}
    by_id = gallery.render_errors("linear", predictions, tmp_path, {})
    assert gallery.render_errors("linear", predictions, tmp_path, {"aaaaaaaaaaa": "aaaaaaaaaaa"}) == by_id
    titled = gallery.render_errors("linear", predictions, tmp_path, {"aaaaaaaaaaa": "food 001: a spiral"})
    assert titled != by_id
    assert thumb_centre(decode(titled), 0, 1) == thumb_centre(decode(by_id), 0, 1)  # the same frames below it


def test_control_characters_and_long_labels_are_cleaned() -> None:
    assert gallery.label("food\x1b[31m\n") == "food[31m"
    assert gallery.label("x" * 100) == "x" * (gallery.LABEL_LIMIT - 3) + "..."
    assert gallery.label("food 001: " + "a long title " * 9, gallery.TITLE_LIMIT).endswith(" a long...")  # at a word


def test_write_error_images_one_png_per_variant_and_no_stale_ones(tmp_path: Path) -> None:
    out = tmp_path / "errors"
    out.mkdir()
    (out / "gone.png").write_bytes(b"old")
    (out / "notes.txt").write_text("kept")
    predictions = {"linear": {"aaaaaaaaaaa": ("food", "travel")}, "logreg": {"aaaaaaaaaaa": ("food", "food")}}
    assert gallery.write_error_images(out, predictions, tmp_path, {}) == {"linear": 1, "logreg": 0}
    assert sorted(p.name for p in out.iterdir()) == ["linear.png", "logreg.png", "notes.txt"]
