"""Pictures of what a model got wrong: one PNG per variant, a row of sampled frames per misclassified test video.

A metric says how many videos a variant missed; the frames say why (a distractor picture, a dark intro, a
label that is wrong). Each row names its video by title (the manifest's), as people know it, not by its id
hash. The images are DVC image plots, so `dvc plots show` puts them beside the curves.
The same predictions and frames give the same PNG bytes (no timestamps, no metadata, fixed font and
layout), so DVC sees an unchanged output as unchanged.
"""

from __future__ import annotations

import functools
import io
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from clipvideo.core.files import write_bytes_atomic
from clipvideo.core.ids import is_safe_id
from clipvideo.core.text import printable, shorten
from clipvideo.video.store import load_frame_jpegs

MAX_ROWS = 12  # videos drawn per variant; the image says how many more there are
MAX_FRAMES = 8  # frames per row, evenly picked from the stored ones
THUMB = 80  # thumbnail box, pixels (frames are square; others keep their aspect ratio inside it)
GAP = 4
MARGIN = 10
TEXT_SIZE = 13
LINE = 18  # height of one line of text
LABEL_LIMIT = 40  # characters of an id or label drawn; longer values are cut with "..."
TITLE_LIMIT = 60  # characters of a video's title: with two labels it fits the width
WIDTH = 2 * MARGIN + MAX_FRAMES * THUMB + (MAX_FRAMES - 1) * GAP
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
MISSING = (200, 200, 200)  # a frame or a whole strip that could not be read
PALETTE_COLOURS = 256
FONT = ImageFont.load_default(size=TEXT_SIZE)  # Pillow's bundled font: the same glyphs on every machine


def label(value: str, limit: int = LABEL_LIMIT) -> str:
    """A value from a CSV as drawable text: control characters dropped (as in the manifest), cut short."""
    return shorten(printable(value), limit, at_word=True)


def misclassified(predictions: dict[str, tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(id, actual, predicted) of every wrong prediction, sorted by id."""
    return sorted((i, actual, predicted) for i, (actual, predicted) in predictions.items() if actual != predicted)


def evenly_picked(count: int, limit: int = MAX_FRAMES) -> list[int]:
    """At most `limit` indices spread over range(count), first and last included."""
    if count <= limit:
        return list(range(count))
    return sorted({round(x) for x in np.linspace(0, count - 1, limit)})


def thumbnail(jpeg: bytes) -> Image.Image:
    """One frame fitted into THUMB x THUMB, centred on the background; a grey tile when it does not decode."""
    tile = Image.new("RGB", (THUMB, THUMB), BACKGROUND)
    try:
        with Image.open(io.BytesIO(jpeg)) as image:
            frame = image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError):
        tile.paste(MISSING, (0, 0, THUMB, THUMB))
        return tile
    frame.thumbnail((THUMB, THUMB), Image.Resampling.BICUBIC)
    tile.paste(frame, ((THUMB - frame.width) // 2, (THUMB - frame.height) // 2))
    return tile


def frame_strip(frames_dir: Path, video_id: str) -> tuple[list[Image.Image], str]:
    """The video's thumbnails, or no thumbnails and why (the row still shows the labels)."""
    if not is_safe_id(video_id):
        return [], "no frames: not a valid video id"
    path = frames_dir / f"{video_id}.npz"
    if not path.is_file():
        return [], f"no frames: {path.name} is missing"
    try:
        jpegs = load_frame_jpegs(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        return [], f"no frames: {path.name} is unreadable ({type(exc).__name__})"
    if not jpegs:
        return [], f"no frames: {path.name} holds none"
    return [thumbnail(jpegs[i]) for i in evenly_picked(len(jpegs))], ""


Strip = Callable[[str], tuple[list[Image.Image], str]]  # a video id -> frame_strip's answer for it


def render_errors(
    variant: str, predictions: dict[str, tuple[str, str]], frames_dir: Path, titles: Mapping[str, str]
) -> bytes:
    """PNG bytes: a title line, then per misclassified video (at most MAX_ROWS, by id) its title (its id when it
    has none), its labels and frames."""
    strip = functools.partial(frame_strip, frames_dir)
    return draw_errors(variant, misclassified(predictions), len(predictions), strip, titles)


def draw_errors(
    variant: str, wrong: list[tuple[str, str, str]], total: int, strip: Strip, titles: Mapping[str, str]
) -> bytes:
    """render_errors from misclassified()'s answer, the count of predictions, and where the frames come from."""
    shown = wrong[:MAX_ROWS]
    title = f"{label(variant)}: {len(wrong)} of {total} test videos misclassified"
    if not wrong:
        title = f"{label(variant)}: no misclassified test videos (of {total})"
    footer = f"... and {len(wrong) - len(shown)} more, not shown (all are in the confusion data)"
    row_height = LINE + THUMB + 2 * GAP
    height = 2 * MARGIN + LINE + len(shown) * row_height + (LINE if len(wrong) > len(shown) else 0)
    canvas = Image.new("RGB", (WIDTH, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((MARGIN, MARGIN), title, font=FONT, fill=TEXT)
    top = MARGIN + LINE + GAP
    for video_id, actual, predicted in shown:
        name = label(titles[video_id], TITLE_LIMIT) if video_id in titles else label(video_id)
        caption = f"{name}   true: {label(actual)}   predicted: {label(predicted)}"
        draw.text((MARGIN, top), caption, font=FONT, fill=TEXT)
        thumbs, problem = strip(video_id)
        if problem:
            draw.rectangle((MARGIN, top + LINE, WIDTH - MARGIN - 1, top + LINE + THUMB - 1), fill=MISSING)
            draw.text((MARGIN + GAP, top + LINE + (THUMB - LINE) // 2), problem, font=FONT, fill=TEXT)
        for k, thumb in enumerate(thumbs):
            canvas.paste(thumb, (MARGIN + k * (THUMB + GAP), top + LINE))
        top += row_height
    if len(wrong) > len(shown):
        draw.text((MARGIN, top), footer, font=FONT, fill=TEXT)
    buffer = io.BytesIO()
    # 256 colours: a third to a quarter of the bytes of full colour (git keeps every version), text still sharp.
    # No pnginfo: no time or software chunk.
    canvas.quantize(PALETTE_COLOURS, method=Image.Quantize.FASTOCTREE).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def write_error_images(
    out_dir: Path, predictions: dict[str, dict[str, tuple[str, str]]], frames_dir: Path, titles: Mapping[str, str]
) -> dict[str, int]:
    """out_dir/<variant>.png for every variant (and no other PNG there); returns each variant's error count.
    `titles`: id -> the video's title (the manifest's), drawn instead of the id."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.png"):
        if stale.stem not in predictions:
            stale.unlink()
    counts = {}
    # A video most variants miss is read and thumbnailed once (thumbnails are only pasted, never changed).
    strip = functools.cache(functools.partial(frame_strip, frames_dir))
    for variant, variant_predictions in predictions.items():
        wrong = misclassified(variant_predictions)
        png = draw_errors(variant, wrong, len(variant_predictions), strip, titles)
        write_bytes_atomic(out_dir / f"{variant}.png", png)
        counts[variant] = len(wrong)
    return counts
