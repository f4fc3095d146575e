"""Every path the pipeline reads or writes, defined once.

Stages run with the project root as the working directory (DVC does that); tests build a
`ProjectPaths` on a temporary root instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProjectPaths:
    root: Path = Path(".")

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def settings(self) -> Path:
        """How work is done (workers, devices, retries, engine); not a DVC params file: changing it reruns nothing."""
        return self.root / "settings.yaml"

    @property
    def variants(self) -> Path:
        """The classifier variants (their train and evaluate@ stages), defined once."""
        return self.root / "variants.yaml"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def checked(self) -> Path:
        """check_params' verdict, the gate: manifest and embed_text depend on it (no code reads it). Absent from a
        fresh clone (DVC caches it, git ignores it), so the first `dvc repro` there runs the checks before any work."""
        return self.data / "checked.txt"

    @property
    def sample_videos(self) -> Path:
        return self.data / "sample"

    @property
    def manifest(self) -> Path:
        return self.data / "manifest.csv"

    @property
    def videos_dir(self) -> Path:
        return self.data / "videos"

    @property
    def videos_table(self) -> Path:
        return self.data / "videos.csv"

    @property
    def frames_dir(self) -> Path:
        return self.data / "frames"

    @property
    def frames_table(self) -> Path:
        return self.data / "frames.csv"

    @property
    def frames_settings(self) -> Path:
        """frames_count, size and mode of the stored frames, written with them (embed copies, not re-reads params)."""
        return self.frames_dir / "settings.json"

    @property
    def embeddings_dir(self) -> Path:
        return self.data / "embeddings"

    @property
    def text_dir(self) -> Path:
        """The category prompt embeddings (embed_text stage): the zeroshot classifier."""
        return self.data / "text"

    @property
    def split_table(self) -> Path:
        return self.data / "split.csv"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model_file(self, variant: str) -> Path:
        return self.models_dir / f"{variant}.pt"

    @property
    def metrics_dir(self) -> Path:
        return self.root / "metrics"

    def metrics_file(self, variant: str) -> Path:
        return self.metrics_dir / f"{variant}.json"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    def report_file(self, variant: str) -> Path:
        """Everything evaluate found (not a DVC metric): per-class figures, intervals, encoder, predictions."""
        return self.reports_dir / f"{variant}.json"

    @property
    def reference(self) -> Path:
        """The reference study, cited once: its protocol and its numbers."""
        return self.root / "reference.yaml"

    @property
    def leakage_metrics(self) -> Path:
        """How many test videos have a near-duplicate in training (a DVC metric)."""
        return self.metrics_dir / "leakage.json"

    @property
    def leakage_report(self) -> Path:
        """Each near-duplicate: the test video, its closest training video, their cosine (not a DVC metric)."""
        return self.reports_dir / "leakage.json"

    @property
    def summary(self) -> Path:
        return self.metrics_dir / "summary.md"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    def confusion_file(self, variant: str) -> Path:
        return self.plots_dir / "confusion" / f"{variant}.csv"

    def training_curve_file(self, variant: str) -> Path:
        """Training loss and train-set f1 per epoch, for the variants trained epoch by epoch."""
        return self.plots_dir / "train" / f"{variant}.csv"

    @property
    def f1_plot(self) -> Path:
        """Every variant's test f1_micro with its interval, ranked on val (the report stage): one chart."""
        return self.plots_dir / "f1_micro.csv"

    @property
    def errors_dir(self) -> Path:
        """One PNG per variant of its misclassified test videos (DVC image plots)."""
        return self.plots_dir / "errors"
