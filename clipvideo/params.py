"""params.yaml (what changes a result) and settings.yaml (how work is done): typed, checked before any work.

Both files are described once, by the pydantic models below: type, range, default and meaning of
every key. Every error is one line naming the file, the key, the offending value (cut short) and
what is allowed, so `dvc exp run -S frames_count=abc` fails fast and says why. `python -m
clipvideo.params` prints the README's tables from these models.
"""

from __future__ import annotations

import ipaddress
import os
import string
import sys
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from annotated_types import Ge, Gt, Le, Lt
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from clipvideo.errors import ParamsError

MAX_FILE_BYTES = 1024 * 1024  # both files are a few KB; anything larger is not a settings file
MAX_SHOWN_CHARS = 60  # a value quoted in an error message is cut to this


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
OptionalText = Annotated[str | None, AfterValidator(lambda v: v if v is None else non_blank(v)),
                         Expect("null or a non-empty string")]  # fmt: skip
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
class DatasetParams(Section):
    source: Literal["sample", "youtube"] = Field(description="the offline generated sample, or the Kaggle CSV")
    csv: Text = Field(description="the Kaggle CSV (youtube source); fetched with kagglehub when missing")
    categories: Names = Field(description="the classes; rows of other categories are `invalid`")


class SampleParams(Section):
    videos_per_category: int = Field(ge=2, le=500, description="size of the generated sample")
    min_duration_s: float = Field(ge=1, le=600, description="shortest generated video, seconds")
    max_duration_s: float = Field(ge=1, le=600, description="longest generated video, seconds")
    distractor_opacity: float = Field(
        ge=0, le=0.9, description="up to this much of another category's picture over each video (0: clean)"
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


class EmbedParams(Section):
    model: Text = Field(description="an open_clip model name, or a path to a model config `.json`")
    pretrained: Text = Field(
        description="`none` (seeded random init: a pipeline check), an open_clip tag (`openai`, ...), a checkpoint path"
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        description="compute precision: bf16 weights on a CPU, autocast on CUDA (fp16: CUDA only); stored as float16"
    )


class EmbedTextParams(Section):
    prompts: Prompts = Field(
        description="zeroshot prompt templates (`_` in a category is read as a space); several are averaged"
    )


class SplitParams(Section):
    test_size: float = Field(gt=0, lt=1, description="fraction of videos held out, stratified by category")


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
    optim: OptimParams
    mixup: MixupParams
    transformer: TransformerParams
    logreg: LogregParams


class EvaluateParams(Section):
    bootstrap: int = Field(ge=0, le=100_000, description="bootstrap resamples for the intervals (0: none)")
    confidence: float = Field(ge=0.5, lt=1, description="interval level")


class Params(Section):
    frames_count: int = Field(ge=1, le=1000, description="frames sampled per video, evenly spaced over its duration")
    seed: int = Field(ge=0, le=2**31 - 1, description="sample, random encoder init, split, training, bootstrap")
    dataset: DatasetParams
    sample: SampleParams
    download: DownloadParams
    frames: FramesParams
    embed: EmbedParams
    embed_text: EmbedTextParams
    split: SplitParams
    train: TrainParams
    evaluate: EvaluateParams


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


class EmbedSettings(Section):
    batch_size: int = Field(64, ge=1, le=4096, description="images per forward pass, filled across videos")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the model runs")


class EngineSettings(Section):
    kind: Literal["local", "ray"] = Field(
        "local", description="`local`: this machine; `ray`: frames and embed run on a Ray cluster"
    )
    address: OptionalText = Field(None, description="the Ray cluster (`RAY_ADDRESS` in the environment wins)")


class Settings(Section):
    download: DownloadSettings = DownloadSettings()
    frames: FramesSettings = FramesSettings()
    embed: EmbedSettings = EmbedSettings()
    engine: EngineSettings = EngineSettings()


SETTINGS_ENV = "CLIPVIDEO_SETTINGS"  # another settings file, e.g. per machine of a cluster


# ----------------------------------------------------------------------------------------- reading
class NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without anchors and aliases (an alias bomb expands to gigabytes) or repeated keys."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ParamsError(f"{self.name}:{event.start_mark.line + 1}: YAML anchors and aliases (& and *) are not "
                              "allowed here; write each value out")  # fmt: skip
        return super().compose_node(parent, index)  # type: ignore[misc]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ParamsError(f"{self.name}:{key_node.start_mark.line + 1}: key {key!r} is given twice")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path, label: str) -> Any:
    """The file's YAML document, or one line saying why it cannot be read."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ParamsError(f"{label}: {size} bytes, more than {MAX_FILE_BYTES}; expected a small YAML file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ParamsError(f"{label}:{line}: byte 0x{data[exc.start]:02x} is not UTF-8 text") from None
    loader = NoAliasLoader(text)
    loader.name = label
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ParamsError(f"{label}: not valid YAML ({shown_text(' '.join(str(exc).split()), 200)})") from None
    finally:
        loader.dispose()


def shown_text(text: str, limit: int = MAX_SHOWN_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def shown(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut short (a value can be megabytes)."""
    return shown_text(repr(value))


def constraint_text(info: FieldInfo) -> str:
    """`an integer in [1, 1000]`, `a number in (0, 1)`, `one of exact, keyframe`, ... from the field's type."""
    for meta in info.metadata:
        if isinstance(meta, Expect):
            return meta.text
    annotation = info.annotation
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(annotation)))
    if annotation is bool:
        return "true or false"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a section with keys " + ", ".join(annotation.model_fields)
    low = next(((m.ge, "[") for m in info.metadata if isinstance(m, Ge)), None) or next(
        ((m.gt, "(") for m in info.metadata if isinstance(m, Gt)), None
    )
    high = next(((m.le, "]") for m in info.metadata if isinstance(m, Le)), None) or next(
        ((m.lt, ")") for m in info.metadata if isinstance(m, Lt)), None
    )
    noun = "an integer" if annotation is int else "a number"
    if low and high:
        return f"{noun} in {low[1]}{low[0]}, {high[0]}{high[1]}"
    return noun


def field_at(model: type[BaseModel], location: tuple[str | int, ...]) -> tuple[type[BaseModel], FieldInfo | None]:
    """The model that holds the last key of `location`, and that key's field (None when unknown)."""
    for key in location[:-1]:
        info = model.model_fields.get(str(key))
        annotation = info.annotation if info else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return model, model.model_fields.get(str(location[-1]))


def one_line(error: dict[str, Any], model: type[BaseModel], label: str) -> str:
    """pydantic's first error as `label: key=value: expected ...` (or unknown/missing key)."""
    location = tuple(part for part in error["loc"] if not isinstance(part, int))
    key = ".".join(map(str, location))
    holder, info = field_at(model, location)
    if error["type"] == "extra_forbidden":
        if len(location) == 1:
            return f"{label}: unknown top-level key {key}; known keys: {', '.join(holder.model_fields)}"
        parent = ".".join(map(str, location[:-1]))
        return f"{label}: unknown key {key}; {parent} takes {', '.join(holder.model_fields)}"
    if error["type"] == "missing":
        return f"{label}: missing key {key}"
    if info is None:  # a model-level rule: the message was made by the rule
        return f"{label}: {error['msg']}"
    return f"{label}: {key}={shown(error['input'])}: expected {constraint_text(info)}"


def validated(model: type[Section], raw: Any, label: str) -> Section:
    if not isinstance(raw, Mapping):
        raise ParamsError(f"{label}: expected a mapping of sections at the top level")
    try:
        return model.model_validate(raw)  # a cross-key rule raises its own ParamsError
    except ValidationError as exc:
        raise ParamsError(one_line(exc.errors()[0], model, label)) from None


def load_params(path: Path) -> dict[str, Any]:
    """Read params.yaml and validate all of it: every stage checks the whole file before any work, so a
    typo in `train` stops `dvc repro` at its first stage, not after hours of downloading."""
    if not path.is_file():
        raise ParamsError(f"{path}: missing; the pipeline reads what changes its results from params.yaml")
    return validated(Params, read_yaml(path, "params.yaml") or {}, "params.yaml").model_dump()


def settings_file(default: Path) -> Path:
    """`settings.yaml` at the project root, or the file CLIPVIDEO_SETTINGS names."""
    named = os.environ.get(SETTINGS_ENV)
    return Path(named) if named else default


def load_settings(path: Path) -> dict[str, Any]:
    """Read settings.yaml; a missing file or key takes the default (settings never change a result)."""
    path = settings_file(path)
    if not path.is_file():
        if os.environ.get(SETTINGS_ENV):
            raise ParamsError(f"{SETTINGS_ENV}={str(path)!r}: no such file")
        return Settings().model_dump()
    return validated(Settings, read_yaml(path, path.name) or {}, path.name).model_dump()


def dotted(values: Mapping[str, Any], key: str) -> Any:
    node: Any = values
    for part in key.split("."):
        node = node[part]
    return node


def has_key(model: Any, key: str) -> bool:
    """True when `key` (dotted) names a section or a value of `model` (Params: params.yaml, Settings: settings.yaml)."""
    for part in key.split("."):
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return False
        model = model.model_fields[part].annotation
    return True


class DeclaredParams(dict):
    """Only the keys a stage declares, nested as in params.yaml: reading any other is an error naming it."""

    def __init__(self, owner: str, prefix: str = "") -> None:
        super().__init__()
        self.owner, self.prefix = owner, prefix

    def __missing__(self, key: str) -> Any:
        raise ParamsError(f"{self.owner} reads {self.prefix}{key}, which it does not declare")


def subset(values: Mapping[str, Any], keys: Sequence[str], owner: str) -> DeclaredParams:
    """The dotted `keys` of `values`, for `owner` (named in the error when it reads another key)."""
    chosen = DeclaredParams(owner)
    for key in keys:
        *parents, last = key.split(".")
        node = chosen
        for depth, part in enumerate(parents):
            if part not in node:
                node[part] = DeclaredParams(owner, ".".join(parents[: depth + 1]) + ".")
            node = node[part]
        node[last] = dotted(values, key)
    return chosen


# ------------------------------------------------------------------------------------ README tables
def leaf_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, FieldInfo]]:
    rows = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += leaf_fields(annotation, f"{prefix}{name}.")
        else:
            rows.append((f"{prefix}{name}", info))
    return rows


def markdown_cell(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value).replace("|", "\\|")


def markdown_table(model: type[BaseModel], values: Mapping[str, Any]) -> str:
    """One row per key: default (the value in `values`), what is allowed, and what it means."""
    lines = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for key, info in leaf_fields(model):
        allowed = constraint_text(info).replace("|", "\\|")
        lines.append(f"| `{key}` | `{markdown_cell(dotted(values, key))}` | {allowed} | {info.description or ''} |")
    return "\n".join(lines)


def readme_tables(root: Path) -> dict[str, str]:
    """The params and settings tables the README shows, made from the models and the committed files."""
    return {
        "params": markdown_table(Params, load_params(root / "params.yaml")),
        "settings": markdown_table(Settings, Settings().model_dump()),
    }


if __name__ == "__main__":
    for name, table in readme_tables(Path(".")).items():
        print(f"<!-- {name} table: generated by `python -m clipvideo.params` -->\n{table}\n")
    sys.exit(0)
