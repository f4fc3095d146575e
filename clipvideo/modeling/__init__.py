"""Classifiers on stored embeddings: labelled data (data), the split (split), the model registry
(classifiers), training (training), saved models (saved) and classifying one new video (predict)."""
