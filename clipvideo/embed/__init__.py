"""CLIP embeddings: the one encoder loader (encoder), forward batches (batches), the embedder that runs them
on an engine (embedder), category prompts (prompts) and the stored arrays (store: numpy only, cheap to import)."""
