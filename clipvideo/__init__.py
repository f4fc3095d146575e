"""Video classification from CLIP frame embeddings: the library behind the DVC stages in `stages/`.

Subpackages by concern, each importing only those listed below it (import-linter checks this in CI):

    cli          the stage runner and `python -m clipvideo` commands
    evaluation   metrics, the report, error images
    modeling     labelled data, the split, classifiers, training, saved models, predict
    acquire      manifest, synthetic sample, yt-dlp fetcher, network guard     (acquire and embed are
    embed        encoder, batches, embedder, category prompts, stored arrays   independent of each other)
    video        probe and allow-list, seek planner, decoders, frame store, the frames step
    engines      where per-video work runs: this host or a Ray cluster
    config       params.yaml, settings.yaml and variants.yaml: schemas, loading, one-line errors
    core         errors, atomic files, CSV tables, contracts, paths, ids, text, the machine

Package `__init__` modules import nothing, so a light stage (split, train, evaluate, report) loads only
what it uses: never open_clip, torchvision, PyAV or Ray.
"""
