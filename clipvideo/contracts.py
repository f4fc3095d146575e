"""The CSV contracts between stages (see README, "Output contracts")."""

MANIFEST_COLUMNS = ("id", "url", "category", "title", "status", "reason")
VIDEOS_COLUMNS = ("id", "category", "status", "reason", "path", "bytes", "duration_s")
FRAMES_COLUMNS = ("id", "status", "reason", "n_frames")
SPLIT_COLUMNS = ("id", "category", "split")
