"""The file contracts between stages (see README, "Output contracts")."""

MANIFEST_COLUMNS = ("id", "url", "category", "title", "status", "reason")
VIDEOS_COLUMNS = ("id", "category", "status", "reason", "path", "bytes", "duration_s")
FRAMES_COLUMNS = ("id", "status", "reason", "n_frames")
SPLIT_COLUMNS = ("id", "category", "split")

# data/frames/settings.json, written by the frames stage next to the frames it made: key -> the params.yaml key
# it copies. embed records them in meta.json (it does not declare these params); predict checks them.
FRAMES_SETTINGS_KEYS = {"frames_count": "frames_count", "frames_size": "frames.size", "frames_mode": "frames.mode"}
