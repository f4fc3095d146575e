"""Video classification from CLIP frame embeddings: the library the DVC stages share."""
