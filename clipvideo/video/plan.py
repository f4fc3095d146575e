"""Which frames to decode, planned from the packet index alone (no decoding): the pure part of sampling.

The times are the centres of equal slices of the video; each becomes the frame shown at it (exact) or the
keyframe at or before it; the wanted frames are grouped into decode runs from their keyframes. What a plan
costs (frames decoded x pixels per frame) is known before any decoding, so a video whose plan is over the
budget (frames.max_decode_megapixels, and frames.max_decode_megapixels_per_byte of its file) is refused without
decoding a frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

# Split a video across threads only when there is this much to decode (opening it twice costs too).
MIN_PACKETS_TO_SPLIT = 600
MIN_RUNS_TO_SPLIT = 8


def sample_frame_times(duration_s: float, count: int) -> np.ndarray:
    """Centres of `count` equal slices of the video: evenly spaced, never the very first/last frame."""
    return (np.arange(count, dtype=np.float64) + 0.5) * (duration_s / count)


@dataclass(frozen=True)
class PacketIndex:
    """Every video packet in decode order, from demuxing alone (no decoding: about 50 ms for 10 minutes)."""

    pts: np.ndarray  # int64, decode order
    is_keyframe: np.ndarray  # bool, decode order
    time_base: Fraction

    def seconds(self, pts: np.ndarray) -> np.ndarray:
        """Exactly as PyAV's frame.time rounds them (one rounding), so ties break the same way."""
        return pts * self.time_base.numerator / self.time_base.denominator


@dataclass(frozen=True)
class DecodeRun:
    """Seek to the keyframe at `start`, decode packets up to `end` (decode order) and keep `wanted` pts."""

    start: int
    end: int
    wanted: frozenset[int]

    @property
    def packets(self) -> int:
        return self.end - self.start + 1


def choose_frames(index: PacketIndex, targets: np.ndarray, half_frame: float, keyframe_only: bool) -> list[int]:
    """The pts picked for each target: the frame shown at it (exact), or the keyframe at or before it."""
    if keyframe_only:
        key_pts = np.sort(index.pts[index.is_keyframe])
        where = np.searchsorted(index.seconds(key_pts), targets + half_frame, side="right") - 1
        return [int(key_pts[max(0, i)]) for i in where]
    shown = np.sort(index.pts)
    where = np.searchsorted(index.seconds(shown), targets - half_frame, side="left")
    return [int(shown[min(i, len(shown) - 1)]) for i in where]


def plan_runs(index: PacketIndex, wanted_pts: Sequence[int]) -> list[DecodeRun]:
    """Group the wanted frames by the keyframe they are decoded from; overlapping groups decode as one run.

    A frame shown before its keyframe (an open-GOP leading picture) needs the previous group too.
    """
    position = {int(p): i for i, p in enumerate(index.pts)}
    keyframes = np.flatnonzero(index.is_keyframe)
    spans: dict[int, list[int]] = {}
    for pts in sorted(set(wanted_pts)):
        at = position[pts]
        k = int(np.searchsorted(keyframes, at, side="right")) - 1
        if pts < index.pts[keyframes[k]] and k > 0:
            k -= 1
        spans.setdefault(int(keyframes[k]), []).append(pts)
    runs: list[DecodeRun] = []
    for start in sorted(spans):
        end = max(position[p] for p in spans[start])
        if runs and start <= runs[-1].end:
            last = runs.pop()
            runs.append(DecodeRun(last.start, max(last.end, end), last.wanted | frozenset(spans[start])))
        else:
            runs.append(DecodeRun(start, end, frozenset(spans[start])))
    return runs


def split_runs(runs: list[DecodeRun], parts: int, total: int) -> list[list[DecodeRun]]:
    """Contiguous groups of runs with about equal packets to decode, one per thread; `total` is
    planned_frames(runs), which the caller has already counted."""
    groups: list[list[DecodeRun]] = [[]]
    done = 0
    for run in runs:
        if groups[-1] and done >= total * len(groups) / parts and len(groups) < parts:
            groups.append([])
        groups[-1].append(run)
        done += run.packets
    return groups


def planned_frames(runs: Sequence[DecodeRun]) -> int:
    """Frames a seek plan decodes at most (every packet of every run; non-reference ones may be skipped)."""
    return sum(run.packets for run in runs)


def frames_through(last_target_s: float, start_s: float, fps: float) -> int:
    """Frames decoded from the start until the one shown at the last target (the decode-through plan)."""
    return math.floor(max(0.0, last_target_s - start_s) * fps) + 1


def megapixels(frames: int, width: int, height: int) -> float:
    """Decode work: frames x pixels per frame, in millions of pixels."""
    return frames * width * height / 1e6
