"""Forward batches: the frames still to embed, video after video, cut into batches of one fixed size.

Every forward pass runs on exactly FORWARD_BATCH images, the last batch padded: a matrix product's blocking (and
so an image's last bits) can depend on the batch size, never on the other rows at a fixed size. So a frame's
embedding is the same bytes whether its video is embedded alone, with others, in another order, resumed, or on
another engine, and the per-video cache can serve it to any run. A batch carries its frames' JPEG bytes: the
engine that runs it needs no file of the project.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

FORWARD_BATCH = 64  # images per forward pass, always (ViT-B-32: 3,200 tokens); part of the embedding code


@dataclass(frozen=True)
class Segment:
    """Frames [first, stop) of one video of the work list, as part of a forward batch."""

    video: int  # the video's index in the work list
    first: int
    stop: int


@dataclass(frozen=True)
class Batch:
    index: int
    segments: tuple[Segment, ...]
    jpegs: tuple[bytes, ...]  # the segments' frames, in order: what the engine decodes and embeds

    @property
    def size(self) -> int:
        return len(self.jpegs)


@dataclass
class BatchResult:
    batch: Batch
    features: np.ndarray  # (batch.size, dim) float16: the padding rows are not returned


def plan_batches(
    n_frames: Sequence[int], frames_of: Callable[[int], list[bytes]], size: int = FORWARD_BATCH
) -> Iterator[Batch]:
    """Every frame of every video (`frames_of(i)`: video i's JPEGs, read when first needed and dropped after its
    last batch, so memory holds a batch or two, not the dataset), cut into batches of `size`."""
    segments: list[Segment] = []
    jpegs: list[bytes] = []
    index = 0
    for video, count in enumerate(n_frames):
        frames = frames_of(video) if count else []
        first = 0
        while first < count:
            take = min(count - first, size - len(jpegs))
            segments.append(Segment(video, first, first + take))
            jpegs += frames[first : first + take]
            first += take
            if len(jpegs) == size:
                yield Batch(index, tuple(segments), tuple(jpegs))
                segments, jpegs, index = [], [], index + 1
    if segments:
        yield Batch(index, tuple(segments), tuple(jpegs))
