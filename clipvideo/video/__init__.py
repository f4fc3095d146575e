"""Videos in, frames out: probing and the demuxer allow-list (probe), the pure seek planner (plan), PyAV
decoding (decode), the one-file-per-video frame store (store) and the frames step over a table (frames)."""
