"""The schemas of params.yaml (what changes a result) and settings.yaml (how work is done).

Each key is described once, here: its type, range, default and meaning. The loader (config.loading) turns a
validation error into one line from these descriptions, and docs/configuration.md and settings.yaml are
generated from them (`python -m tools.generate`).
"""

from __future__ import annotations

import ipaddress
import string
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from clipvideo.core.errors import ParamsError


class Expect:
    """What a constrained value must be, in the words an error message and the README use."""

    def __init__(self, text: str) -> None:
        self.text = text


def distinct_names(value: list[str]) -> list[str]:
    if len(value) < 2 or len(set(value)) != len(value) or not all(v.replace("_", "").isalnum() for v in value):
        raise ValueError("not distinct names")
    return value


def category_templates(value: list[str]) -> list[str]:
    """Each text has exactly one {category} field and nothing else in braces; no text twice."""
    for template in value:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
        if fields != ["category"]:
            raise ValueError("not a template")
    if not value or len(set(value)) != len(value):
        raise ValueError("not distinct templates")
    return value


def non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("blank")
    return value


def ip_networks(value: Any) -> bool | tuple[str, ...]:
    """true, false, or a non-empty list of IP networks (`10.1.2.0/24`, `127.0.0.1`), normalised."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError("not networks")
    return tuple(str(ipaddress.ip_network(v.strip(), strict=False)) for v in value)  # ValueError if not one


Text = Annotated[str, AfterValidator(non_blank), Expect("a non-empty string")]
OptionalText = Annotated[
    str | None, AfterValidator(lambda v: v if v is None else non_blank(v)), Expect("null or a non-empty string")
]
Names = Annotated[
    list[str],
    AfterValidator(distinct_names),
    Expect("a list of at least 2 distinct names made of letters, digits and underscores"),
]
Networks = Annotated[
    Any, AfterValidator(ip_networks), Expect("true, false or a list of IP networks such as [10.1.2.0/24]")
]
Prompts = Annotated[
    list[str],
    Field(max_length=64),
    AfterValidator(category_templates),
    Expect("a list of 1 to 64 distinct texts, each with {category} and no other {}"),
]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, validate_default=True)


# ----------------------------------------------------------------------------------------- params.yaml
OptionalNames = Annotated[
    list[str] | None,
    AfterValidator(lambda v: v if v is None else distinct_names(v)),
    Expect("null or a list of at least 2 distinct names made of letters, digits and underscores"),
]


class DatasetParams(Section):
    source: Literal["sample", "youtube", "csv", "folder"] = Field(
        description="the offline generated sample, the Kaggle CSV (`youtube`), any CSV of links (`csv`), or a "
        "folder with one subfolder per category (`folder`)"
    )
    csv: Text = Field(
        description="youtube and csv sources: a CSV with columns link, category (and title, description); a link "
        "is a YouTube id, an http(s) url or a path relative to the CSV; youtube: fetched with kagglehub when missing"
    )
    folder: Text = Field(
        description="folder source: `<folder>/<category>/<video files, in subfolders too>`, read in place (a DVC "
        "dependency by content)"
    )
    allow_outside_links: bool = Field(
        description="read files that a symlink in the folder (or a CSV's relative path) reaches outside it"
    )
    categories: OptionalNames = Field(
        description="the classes; rows of other categories are `invalid`; null: the folder source's subfolders"
    )


class SampleParams(Section):
    seed: int = Field(ge=0, le=2**31 - 1, description="the sample's variation (patterns, colours, durations)")
    videos_per_category: int = Field(ge=2, le=500, description="size of the generated sample")
    min_duration_s: float = Field(ge=1, le=600, description="shortest generated video, seconds")
    max_duration_s: float = Field(ge=1, le=600, description="longest generated video, seconds")
    distractor_opacity: float = Field(
        ge=0, le=0.9, description="up to this much of another category's picture over each video (0: clean)"
    )
    series_per_category: int = Field(
        ge=0, le=50, description="series per category: 3 episodes of one picture, kept on one side by the split"
    )

    @model_validator(mode="after")
    def durations_in_order(self) -> SampleParams:
        if self.min_duration_s > self.max_duration_s:
            raise ParamsError(
                f"params.yaml: sample.min_duration_s={self.min_duration_s!r}: expected at most "
                f"sample.max_duration_s={self.max_duration_s!r}"
            )
        return self


class DownloadParams(Section):
    max_height: int = Field(ge=144, le=4320, description="youtube: best single-file format at most this tall")
    max_filesize_mb: int = Field(ge=1, le=100_000, description="videos larger than this are `unavailable`")


class FramesParams(Section):
    size: int = Field(ge=32, le=1024, description="the centre square of each frame, scaled to size x size")
    mode: Literal["exact", "keyframe"] = Field(
        description="exact timestamps, or the keyframe at or before each (approximate, much faster)"
    )
    max_decode_megapixels: int = Field(
        ge=1,
        le=10**9,
        description="a video whose planned decoding costs more (frames decoded x their pixels) is an `error`",
    )
    max_decode_megapixels_per_byte: float = Field(
        gt=0,
        le=1000,
        description="a video whose planned decoding costs more than this per byte of its file (beyond a small "
        "allowance every video has) is an `error`: a decode bomb (docs/security.md)",
    )


class EmbedParams(Section):
    model: Text = Field(description="an open_clip model name, or a path to a model config `.json` in `encoders/`")
    pretrained: Text = Field(
        description="`none` (seeded random init: a pipeline check), an open_clip tag (`openai`, ...), a checkpoint "
        "path in `encoders/`"
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        description="compute precision: bf16 weights on a CPU, autocast on CUDA (fp16: CUDA only); stored as float16"
    )
    seed: int = Field(ge=0, le=2**31 - 1, description="the random init of the encoder; used only with pretrained: none")


class EmbedTextParams(Section):
    prompts: Prompts = Field(
        description="zeroshot prompt templates (`_` in a category is read as a space); several are averaged"
    )


class SplitParams(Section):
    seed: int = Field(ge=0, le=2**31 - 1, description="keys the hash that puts each series on its side")
    test_size: float = Field(gt=0, lt=1, description="expected fraction of each category's videos in test")
    val_size: float = Field(ge=0, lt=1, description="expected fraction in val (epoch and setting choices)")

    @model_validator(mode="after")
    def leaves_training(self) -> SplitParams:
        if self.test_size + self.val_size >= 0.9:
            raise ParamsError(
                f"params.yaml: split.test_size + split.val_size = {self.test_size + self.val_size:g}: expected "
                "below 0.9, so that training keeps videos"
            )
        return self


class OptimParams(Section):
    epochs: int = Field(ge=1, le=10_000, description="passes over the training videos")
    lr: float = Field(gt=0, le=10, description="AdamW learning rate")
    weight_decay: float = Field(ge=0, le=1, description="AdamW weight decay")
    batch_size: int = Field(ge=1, le=65536, description="videos per mini-batch (changes the trained weights)")


class MixupParams(Section):
    alpha: float = Field(gt=0, le=100, description="mixing weight ~ Beta(alpha, alpha)")


class TransformerParams(Section):
    layers: int = Field(ge=1, le=24, description="encoder layers")
    heads: int = Field(ge=1, le=64, description="attention heads (must divide the embedding size)")
    ff_dim: int = Field(ge=1, le=65536, description="feed-forward width inside each layer")
    dropout: float = Field(ge=0, lt=1, description="dropout inside the encoder")


class LogregParams(Section):
    C: float = Field(gt=0, le=1e6, description="inverse L2 regularisation strength")
    max_iter: int = Field(ge=1, le=1_000_000, description="solver iterations at most")


class TrainParams(Section):
    seed: int = Field(ge=0, le=2**31 - 1, description="initial weights, batch order and mixup draws")
    optim: OptimParams
    mixup: MixupParams
    transformer: TransformerParams
    logreg: LogregParams


class EvaluateParams(Section):
    seed: int = Field(ge=0, le=2**31 - 1, description="the bootstrap resamples")
    bootstrap: int = Field(ge=0, le=100_000, description="bootstrap resamples for the intervals (0: none)")
    confidence: float = Field(ge=0.5, lt=1, description="interval level")


class CheckLeakageParams(Section):
    cosine: float = Field(gt=0, le=1, description="a test video this close to a training video is a near-duplicate")


class Params(Section):
    frames_count: int = Field(ge=1, le=1000, description="frames sampled per video, evenly spaced over its duration")
    dataset: DatasetParams
    sample: SampleParams
    download: DownloadParams
    frames: FramesParams
    embed: EmbedParams
    embed_text: EmbedTextParams
    split: SplitParams
    train: TrainParams
    evaluate: EvaluateParams
    check_leakage: CheckLeakageParams


# --------------------------------------------------------------------------------------- settings.yaml
class DownloadSettings(Section):
    workers: int = Field(2, ge=1, le=32, description="parallel downloads")
    retries: int = Field(3, ge=0, le=20, description="extra attempts for a transient failure (timeout, HTTP 429/5xx)")
    backoff_s: float = Field(5, ge=0, le=3600, description="wait before retry k: backoff_s * 2**(k-1) seconds")
    socket_timeout_s: float = Field(20, ge=0.1, le=600, description="give up on a silent connection after this")
    sleep_s: float = Field(1, ge=0, le=3600, description="at least this long between two requests (all workers)")
    video_timeout_s: float = Field(
        1800, ge=1, le=86_400, description="wall-clock limit per video; past it the video is `failed`"
    )
    allow_private_networks: Networks = Field(
        False,
        description="fetch urls that resolve to loopback, private or link-local addresses (all, or these networks)",
    )
    retry_unavailable: bool = Field(False, description="retry videos a previous run found removed or private")
    cookies: OptionalText = Field(None, description='a Netscape cookies.txt for YouTube\'s "not a bot" wall')
    cookies_from_browser: OptionalText = Field(None, description="or read them from a browser: `firefox`, `chrome`")
    min_videos: int = Field(8, ge=1, le=1_000_000, description="the stage fails when fewer videos are `ok`")


class FramesSettings(Section):
    workers: int = Field(2, ge=1, le=64, description="videos decoded in parallel")
    min_videos: int = Field(8, ge=1, le=1_000_000, description="the stage fails when fewer videos give frames")
    video_timeout_s: float = Field(
        3600, ge=1, le=86_400, description="wall-clock limit per video; past it the video is an `error`"
    )


class EmbedSettings(Section):
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the model runs")


class TrainSettings(Section):
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="where the torch variants train: auto takes CUDA when torch finds a GPU; a GPU's weights and "
        "metrics may differ from the CPU's in the last bits (the device is recorded in each report)",
    )


class CacheSettings(Section):
    enabled: bool = Field(True, description="false: this run neither reads nor writes the per-video cache")
    dir: OptionalText = Field(
        None,
        description="the per-video cache of frames and embeddings; null: `clipvideo/` in DVC's cache folder, which "
        "every workspace of the repository shares (queued experiments too)",
    )
    max_gb: float = Field(20, gt=0, le=1_000_000, description="its size cap: the least recently used entries go")


class EngineSettings(Section):
    kind: Literal["local", "ray"] = Field(
        "local", description="`local`: this machine; `ray`: frames and embed run on a Ray cluster"
    )
    address: OptionalText = Field(None, description="the Ray cluster (`RAY_ADDRESS` in the environment wins)")
    inflight_mb: int = Field(
        1024, ge=1, le=1_000_000, description="Ray: video bytes the stage keeps in the object store at once"
    )


class Settings(Section):
    download: DownloadSettings = DownloadSettings()
    frames: FramesSettings = FramesSettings()
    embed: EmbedSettings = EmbedSettings()
    train: TrainSettings = TrainSettings()
    engine: EngineSettings = EngineSettings()
    cache: CacheSettings = CacheSettings()
