"""Where per-video work runs: threads on this host (the default) or a Ray cluster. Engines know nothing of
frames or embeddings; they run the calls they are given and return what the calls return."""
