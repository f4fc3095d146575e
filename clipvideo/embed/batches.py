"""Forward batches: every stored frame, video after video, cut at fixed places into batches of one size."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Segment:
    """Frames [first, stop) of one video, as part of a forward batch."""

    row: int  # the video's row in the stored array
    video_id: str
    path: Path  # its frames file, absolute: a path every Ray node sees
    n_frames: int  # the frames data/frames.csv says the file holds
    first: int
    stop: int


@dataclass(frozen=True)
class BatchPlan:
    index: int
    segments: tuple[Segment, ...]

    @property
    def size(self) -> int:
        return sum(segment.stop - segment.first for segment in self.segments)


def plan_batches(videos: Sequence[tuple[str, Path]], n_frames: Sequence[int], batch_size: int) -> Iterator[BatchPlan]:
    """Every stored frame, video after video, cut into forward batches of `batch_size` (the last may be smaller).

    Batch k is always frames [k * batch_size, (k + 1) * batch_size) of that sequence, whatever an interrupted run
    had finished, so its composition, and with it every float the model returns (a matrix product's blocking can
    depend on the batch), is the same in a resumed run, an uninterrupted one and on any engine.
    """
    segments: list[Segment] = []
    filled = index = 0
    for row, ((video_id, path), count) in enumerate(zip(videos, n_frames, strict=True)):
        first = 0
        while first < count:
            take = min(count - first, batch_size - filled)
            segments.append(Segment(row, video_id, path.absolute(), count, first, first + take))
            filled, first = filled + take, first + take
            if filled == batch_size:
                yield BatchPlan(index, tuple(segments))
                segments, filled, index = [], 0, index + 1
    if segments:
        yield BatchPlan(index, tuple(segments))


@dataclass
class BatchResult:
    plan: BatchPlan
    features: np.ndarray  # (plan.size, dim) float16
    cached: bool  # found in the resume folder: an interrupted run computed it
