"""The file contracts between stages: every CSV's columns, every status, the split names and the metrics.

docs/contracts.md describes them for people; a test checks that it lists every table's columns as here.
"""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """A row's verdict in manifest.csv, videos.csv or frames.csv (each file allows the subset below)."""

    VALID = "valid"  # manifest: the row names a video that can be fetched
    INVALID = "invalid"  # manifest, videos: the row cannot be used (bad link, category, duplicate, ...)
    OK = "ok"  # videos: downloaded; frames: every frame asked for
    UNAVAILABLE = "unavailable"  # videos: permanent (removed, private, blocked, too large, live, ...)
    FAILED = "failed"  # videos: transient (network, timeout, HTTP 429/5xx); retried on the next run
    SHORT = "short"  # frames: fewer decodable frames than asked; kept, with a mask
    ERROR = "error"  # frames: unreadable; the reason says why

    __hash__ = str.__hash__  # Enum hashes the member's name: "ok" and Status.OK must be one dict key

    def __str__(self) -> str:
        return self.value


MANIFEST_STATUSES = (Status.VALID, Status.INVALID)
VIDEO_STATUSES = (Status.OK, Status.UNAVAILABLE, Status.FAILED, Status.INVALID)
FRAME_STATUSES = (Status.OK, Status.SHORT, Status.ERROR)
USABLE_FRAMES = (Status.OK, Status.SHORT)  # a frames row embed and the models use

# The video file names the pipeline stores or reads in place (the demuxers decode.py allows decide the rest).
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")
SOURCE_COLUMNS = ("link", "title", "category")  # the Kaggle CSV's columns the manifest reads (it has more)
# series: the key that keeps a series on one side of the split (clipvideo.acquire.series; "" for the sample's single
# videos, which are their own group)
MANIFEST_COLUMNS = ("id", "url", "category", "title", "series", "status", "reason")
# The longest free text data/manifest.csv keeps from the source CSV (a title; an invalid row's url and
# category): longer text is cut and says how long it was. YouTube allows 100 characters in a title.
MAX_TEXT_CHARS = 200
VIDEOS_COLUMNS = ("id", "category", "status", "reason", "path", "bytes", "duration_s")
FRAMES_COLUMNS = ("id", "status", "reason", "n_frames")
SPLIT_COLUMNS = ("id", "category", "split", "group")  # group: the series key, or the id
EMBEDDINGS_INDEX_COLUMNS = ("id", "n_frames")  # data/embeddings/index.csv: the array's rows and their masks
PREDICTION_COLUMNS = ("id", "actual", "predicted")  # plots/confusion/<variant>.csv and reports' predictions
# `python -m stages.predict ... --out predictions.csv`: then one `p_<category>` column per category of the model
# (prefixed: a category may be named `path`); status as frames.csv's, or `error` for a url that cannot be fetched
PREDICT_OUT_COLUMNS = ("path", "status", "reason", "predicted", "variant")
CURVE_COLUMNS = ("epoch", "loss", "f1", "val_loss", "val_f1")  # plots/train/<variant>.csv
# plots/f1_micro.csv, ranked on val: the metric, then its interval as <metric>_low, <metric>_high (as in the reports;
# the plot template .dvc/plots/interval.json finds the bounds by these names)
VARIANT_F1_COLUMNS = ("variant", "f1_micro", "f1_micro_low", "f1_micro_high")

SPLITS = ("train", "val", "test")

# The few flat numbers of metrics/<variant>.json, the DVC metrics: one column each per variant in `dvc exp
# show`. Everything else evaluate finds goes to reports/<variant>.json.
# val_f1_micro is the val set's, what the experiments table stars; the others are the test set's.
DVC_METRICS = ("f1_micro", "f1_macro", "n_test", "val_f1_micro")

# data/frames/settings.json, written by the frames stage next to the frames it made: key -> the params.yaml key
# it copies. embed records them in meta.json (it does not declare these params); predict checks them.
FRAMES_SETTINGS_KEYS = {"frames_count": "frames_count", "frames_size": "frames.size", "frames_mode": "frames.mode"}
FRAMES_DECODER_KEY = "decoder"  # data/frames/settings.json: the decoder fingerprint (library versions) beside them
