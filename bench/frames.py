"""Frame sampling speed: our sampler in each mode against the full-decode floor and two baselines.

Rows per video and frame count: `ffmpeg -i V -f null -` (decoding everything once: the floor for any
decode-everything method), our sampler (exact with 1 and 2 threads, keyframe), the reference's
OpenCV loop (set CAP_PROP_POS_FRAMES, read, for each frame), and one ffmpeg process per frame.
Then the throughput across videos with 1 and 2 workers. Videos are generated once into bench/.cache/.

    python bench/frames.py              # 1- and 10-minute videos, 16 and 100 frames, best of 2 (about 2 minutes)
    python bench/frames.py --minutes 1  # only the 1-minute video
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import bench_video, machine, table, timed

from clipvideo.core.system import ffmpeg_binary
from clipvideo.video.decode import sample_frames
from clipvideo.video.plan import sample_frame_times
from clipvideo.video.probe import video_duration

SIZE = 224


def full_decode(path: Path) -> None:
    subprocess.run([ffmpeg_binary(), "-v", "error", "-nostdin", "-i", str(path), "-f", "null", "-"], check=True)


def opencv_seek_loop(path: Path, count: int) -> None:
    """The reference implementation: seek to each frame index with OpenCV, read one frame."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    for index in (sample_frame_times(total, count)).astype(int):
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = capture.read()
        if not ok:
            raise RuntimeError(f"OpenCV could not read frame {index} of {path}")
        cv2.resize(frame, (SIZE * frame.shape[1] // frame.shape[0], SIZE), interpolation=cv2.INTER_AREA)
    capture.release()


def ffmpeg_per_frame(path: Path, count: int) -> None:
    """One ffmpeg process per target: input seeking (accurate by default), one scaled RGB frame out."""
    for time in sample_frame_times(video_duration(path), count):
        subprocess.run(
            [
                ffmpeg_binary(),
                "-v",
                "error",
                "-nostdin",
                "-ss",
                f"{time:.3f}",
                "-i",
                str(path),
                "-frames:v",
                "1",
                "-vf",
                f"scale=-2:{SIZE}",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "-",
            ],
            check=True,
            capture_output=True,
        )


def methods(count: int) -> dict[str, object]:
    return {
        "ours: exact, 1 thread": lambda p: sample_frames(p, count, SIZE, "exact", threads=1),
        "ours: exact, 2 threads": lambda p: sample_frames(p, count, SIZE, "exact", threads=2),
        "ours: keyframe (approximate), 1 thread": lambda p: sample_frames(p, count, SIZE, "keyframe", threads=1),
        "ours: keyframe (approximate), 2 threads": lambda p: sample_frames(p, count, SIZE, "keyframe", threads=2),
        "OpenCV seek per frame (reference)": lambda p: opencv_seek_loop(p, count),
        "one ffmpeg process per frame": lambda p: ffmpeg_per_frame(p, count),
    }


def per_video_table(minutes: list[float], counts: list[int], repeat: int) -> str:
    rows = []
    for length in minutes:
        path = bench_video(length)
        floor = timed(lambda path=path: full_decode(path), repeat)
        rows.append([f"{length:g} min", "-", "full decode `ffmpeg -i V -f null -` (floor)", f"{floor:.3f}", "1.00x"])
        for count in counts:
            for name, method in methods(count).items():
                seconds = timed(lambda method=method, path=path: method(path), repeat)
                rows.append([f"{length:g} min", count, name, f"{seconds:.3f}", f"{seconds / floor:.3f}x"])
            print(f"  done: {length:g} min, {count} frames", file=sys.stderr, flush=True)
    return table(["video", "frames", "method", "seconds", "/ floor"], rows)


def across_videos_table(videos: int, count: int, repeat: int) -> str:
    """Many 1-minute videos through a pool of workers, one thread per video, as the frames stage does."""
    path = bench_video(1)
    rows = []
    base = None
    for workers in (1, 2):

        def run_all(workers: int = workers) -> None:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda p: sample_frames(p, count, SIZE, "exact", threads=1), [path] * videos))

        seconds = timed(run_all, repeat)
        base = base or seconds
        rows.append([workers, videos, count, f"{seconds:.2f}", f"{videos / seconds:.2f}", f"{base / seconds:.2f}x"])
    return table(["workers", "videos (1 min)", "frames", "seconds", "videos/s", "throughput vs 1"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10], help="video lengths (default 1 10)")
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 100], help="frames per video (default 16 100)")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs per cell (default 2)")
    parser.add_argument("--videos", type=int, default=12, help="videos for the across-videos table (default 12)")
    args = parser.parse_args()
    print(f"machine: {machine()}\n")
    print(f"Seconds per video, 640x360 30 fps H.264, keyframe every 5 s, frames at {SIZE} px:\n")
    print(per_video_table(args.minutes, args.frames, args.repeat))
    print("\nAcross videos (exact mode, 16 frames):\n")
    print(across_videos_table(args.videos, 16, args.repeat))
    print("\nrerun: python bench/frames.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
