"""The offline sample: a small synthetic video dataset rendered with real ffmpeg.

Each category is a visually distinct family of lavfi sources; every video gets seeded variation
(pattern, colours, motion, duration, resolution including a portrait one, frame rate, audio), so
the pipeline sees real containers and codecs without touching the network.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from clipvideo.config.schema import SampleParams
from clipvideo.core.errors import PipelineError
from clipvideo.core.files import atomic_path
from clipvideo.core.system import run_ffmpeg

RESOLUTIONS = ((320, 240), (426, 240), (240, 320), (360, 360))
FRAME_RATES = (15, 24, 25, 30)


def _hex(rng: random.Random, hue_range: tuple[float, float], light: tuple[float, float]) -> str:
    import colorsys

    r, g, b = colorsys.hls_to_rgb(rng.uniform(*hue_range), rng.uniform(*light), rng.uniform(0.6, 1.0))
    return f"0x{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def food_source(rng: random.Random, size: str, fps: int) -> tuple[str, str]:
    """Warm, smooth colour gradients drifting slowly."""
    kind = rng.choice(("linear", "radial", "circular", "spiral"))
    colours = [_hex(rng, (0.0, 0.14), (0.35, 0.65)) for _ in range(3)]
    src = (
        f"gradients=s={size}:r={fps}:c0={colours[0]}:c1={colours[1]}:c2={colours[2]}:n=3:"
        f"type={kind}:speed={rng.uniform(0.01, 0.08):.3f}:seed={rng.randrange(1 << 20)}"
    )
    return src, f"{kind} gradient"


def art_music_source(rng: random.Random, size: str, fps: int) -> tuple[str, str]:
    """Colourful fractals zooming, hue-shifted per video."""
    hue = rng.randrange(360)
    if rng.random() < 0.5:
        src = (
            f"mandelbrot=s={size}:r={fps}:maxiter=64:start_scale={rng.uniform(1.5, 3):.2f}:"
            f"end_scale={rng.uniform(0.05, 0.5):.2f}:end_pts={rng.randrange(100, 400)},hue=h={hue}"
        )
        return src, "mandelbrot zoom"
    src = f"sierpinski=s={size}:r={fps}:seed={rng.randrange(1 << 20)}:jump=100:type=carpet,hue=h={hue}:s=2"
    return src, "sierpinski carpet"


def travel_source(rng: random.Random, size: str, fps: int) -> tuple[str, str]:
    """Blue and green cellular landscapes that grow and move."""
    life, mold, death = (_hex(rng, (0.28, 0.62), (0.3, 0.7)) for _ in range(3))
    src = (
        f"life=s={size}:r={fps}:mold={rng.randrange(5, 40)}:life_color={life}:death_color={death}:"
        f"mold_color={mold}:seed={rng.randrange(1 << 20)}:ratio={rng.uniform(0.1, 0.5):.2f}"
    )
    return src, "life landscape"


def history_source(rng: random.Random, size: str, fps: int) -> tuple[str, str]:
    """Sepia, scrolling one-dimensional automata, like old engravings."""
    rule = rng.choice((18, 30, 45, 90, 110, 150))
    warm = rng.uniform(0.8, 1.2)
    src = (
        f"cellauto=s={size}:r={fps}:rule={rule}:seed={rng.randrange(1 << 20)}:"
        f"random_fill_ratio={rng.uniform(0.3, 0.7):.2f}:scroll=1:full=1,format=rgb24,"
        f"lutrgb=r=val*0.55+{int(70 * warm)}:g=val*0.45+45:b=val*0.3+{int(20 / warm)}"
    )
    return src, f"rule {rule} automaton"


FAMILIES: dict[str, Callable[[random.Random, str, int], tuple[str, str]]] = {
    "food": food_source,
    "art_music": art_music_source,
    "travel": travel_source,
    "history": history_source,
}


@dataclass(frozen=True)
class SampleVideo:
    category: str
    path: Path
    title: str
    series: str  # the series the video belongs to ("" for a video of its own)


EPISODES = 3  # videos per series: one picture, each episode encoded on its own (another frame rate, audio or not)


def blended_source(main: str, distractor: str, opacity: float) -> str:
    """A lavfi graph: `main` with another family's picture laid over it at `opacity`."""
    return (
        f"{main},format=yuv420p[main];{distractor},format=yuv420p[top];"
        f"[top][main]blend=all_mode=normal:all_opacity={opacity:.2f}[out0]"
    )


def render_sample_video(path: Path, source: str, duration_s: float, fps: int, with_audio: bool, seed: int) -> None:
    """Encode one lavfi source (or graph) to H.264 MP4, byte-reproducible for the same arguments."""
    args = ["-f", "lavfi", "-i", source]
    if with_audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency={200 + seed % 600}:sample_rate=22050"]
    args += ["-t", f"{duration_s:.2f}", "-map", "0:v"]
    if with_audio:
        args += ["-map", "1:a", "-c:a", "aac", "-b:a", "48k"]
    args += [
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "30",
        "-pix_fmt",
        "yuv420p",
        "-g",
        str(fps * 2),
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-map_metadata",
        "-1",
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
    ]
    with atomic_path(path) as tmp:
        run_ffmpeg([*args, str(tmp)])


def generate_sample(out_dir: Path, categories: list[str], sample: SampleParams, seed: int) -> Iterator[SampleVideo]:
    """Render the sample videos and yield them in a stable order.

    Each video may carry a faint picture of another category laid over it (opacity up to
    `sample.distractor_opacity`), so the classes overlap the way real ones do and models can be told apart.
    The first `sample.series_per_category` x EPISODES videos of a category are series: the episodes of one
    series show the same picture (near-duplicates, as re-uploads and one channel's episodes are on YouTube), so
    a split that separated them would leak (docs/models.md#the-split).
    """
    unknown = [c for c in categories if c not in FAMILIES]
    if unknown:
        raise PipelineError(
            f"params.yaml: dataset.categories has {unknown[0]!r}, which the sample source cannot "
            f"render; the sample has {', '.join(FAMILIES)}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    in_series = min(sample.series_per_category * EPISODES, sample.videos_per_category)
    for c_index, category in enumerate(categories):
        for index in range(sample.videos_per_category):
            video_seed = seed * 100_003 + c_index * 1_009 + index
            series = f"{category} series {index // EPISODES + 1}" if index < in_series else ""
            picture_index = index - index % EPISODES if series else index  # a series: its first episode's picture
            rng = random.Random(seed * 100_003 + c_index * 1_009 + picture_index)
            width, height = RESOLUTIONS[(picture_index + c_index) % len(RESOLUTIONS)]
            fps = rng.choice(FRAME_RATES)
            duration = round(rng.uniform(sample.min_duration_s, sample.max_duration_s), 1)
            with_audio = (rng.random() < 0.5) != (index % 2 == 1 and bool(series))  # episodes differ in audio
            source, pattern = FAMILIES[category](rng, f"{width}x{height}", fps)
            opacity = round(rng.uniform(0, sample.distractor_opacity), 2)
            if opacity > 0:
                other = rng.choice([c for c in FAMILIES if c != category])
                distractor, other_pattern = FAMILIES[other](rng, f"{width}x{height}", fps)
                source = blended_source(source, distractor, opacity)
                pattern += f" under {opacity:.0%} {other_pattern}"
            path = out_dir / f"{category}_{index:03d}.mp4"
            render_sample_video(path, source, duration, fps, with_audio, video_seed)
            episode = f", episode {index % EPISODES + 1} of {series}" if series else ""
            title = f"{category} {index:03d}: {pattern}, {duration:.1f}s, {width}x{height}@{fps}" + (
                ", audio" if with_audio else ""
            )
            yield SampleVideo(category, path, title + episode, series)
