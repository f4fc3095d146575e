"""params.yaml: one schema, checked before a stage does any work.

Every rule names the key, the offending value and what is allowed, in one line, so
`dvc exp run -S frames_count=abc` fails fast and says why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clipvideo.errors import ParamsError


@dataclass(frozen=True)
class Int:
    low: int
    high: int

    def check(self, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            raise ParamsError(f"params.yaml: {key}={value!r}: expected an integer in [{self.low}, {self.high}]")
        return value


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def check(self, key: str, value: Any) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            ok = (value > self.low if self.low_open else value >= self.low) and (
                value < self.high if self.high_open else value <= self.high
            )
        if not ok:
            brackets = ("(" if self.low_open else "[", ")" if self.high_open else "]")
            raise ParamsError(
                f"params.yaml: {key}={value!r}: expected a number in {brackets[0]}{self.low}, {self.high}{brackets[1]}"
            )
        return float(value)


@dataclass(frozen=True)
class Choice:
    values: tuple[str, ...]

    def check(self, key: str, value: Any) -> str:
        if value not in self.values:
            raise ParamsError(f"params.yaml: {key}={value!r}: expected one of {', '.join(self.values)}")
        return value


@dataclass(frozen=True)
class Text:
    """A non-empty string (a model name, a path, a template)."""

    def check(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ParamsError(f"params.yaml: {key}={value!r}: expected a non-empty string")
        return value


@dataclass(frozen=True)
class Template:
    """A non-empty string with exactly the `{field}` placeholders a prompt template may use."""

    field: str

    def check(self, key: str, value: Any) -> str:
        placeholder = "{" + self.field + "}"
        try:
            ok = isinstance(value, str) and placeholder in value and bool(value.format(**{self.field: "x"}))
        except (KeyError, IndexError, ValueError):
            ok = False
        if not ok:
            raise ParamsError(f"params.yaml: {key}={value!r}: expected text with {placeholder} and no other {{}}")
        return value


@dataclass(frozen=True)
class Flag:
    def check(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ParamsError(f"params.yaml: {key}={value!r}: expected true or false")
        return value


@dataclass(frozen=True)
class OptionalText:
    """`null` (the feature is off) or a non-empty string (a cookies file, a browser name)."""

    def check(self, key: str, value: Any) -> str | None:
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ParamsError(f"params.yaml: {key}={value!r}: expected null or a non-empty string")
        return value


@dataclass(frozen=True)
class Names:
    """A list of distinct identifiers such as category names."""

    min_items: int = 1

    def check(self, key: str, value: Any) -> list[str]:
        if (
            not isinstance(value, list)
            or len(value) < self.min_items
            or not all(isinstance(v, str) and v.replace("_", "").isalnum() for v in value)
            or len(set(value)) != len(value)
        ):
            raise ParamsError(
                f"params.yaml: {key}={value!r}: expected a list of at least {self.min_items} distinct "
                "names made of letters, digits and underscores"
            )
        return value


SCHEMA: dict[str, Any] = {
    "frames_count": Int(1, 1000),
    "seed": Int(0, 2**31 - 1),
    "dataset": {
        "source": Choice(("sample", "youtube")),
        "csv": Text(),
        "categories": Names(min_items=2),
    },
    "sample": {
        "videos_per_category": Int(2, 500),
        "min_duration_s": Float(1, 600),
        "max_duration_s": Float(1, 600),
        "distractor_opacity": Float(0, 0.9),
    },
    "download": {
        "min_videos": Int(1, 1_000_000),
        "max_height": Int(144, 4320),
        "max_filesize_mb": Int(1, 100_000),
        "retries": Int(0, 20),
        "backoff_s": Float(0, 3600),
        "socket_timeout_s": Float(0.1, 600),
        "sleep_s": Float(0, 3600),
        "workers": Int(1, 32),
        "retry_unavailable": Flag(),
        "cookies": OptionalText(),
        "cookies_from_browser": OptionalText(),
    },
    "frames": {
        "size": Int(32, 1024),
        "mode": Choice(("exact", "keyframe")),
        "min_videos": Int(1, 1_000_000),
        "workers": Int(1, 64),
    },
    "embed": {
        "model": Text(),
        "pretrained": Text(),
        "precision": Choice(("fp32", "bf16", "fp16")),
        "batch_size": Int(1, 4096),
        "device": Choice(("auto", "cpu", "cuda")),
        "prompt": Template("category"),
    },
    "split": {
        "test_size": Float(0, 1, low_open=True, high_open=True),
    },
    "train": {
        "epochs": Int(1, 10_000),
        "lr": Float(0, 10, low_open=True),
        "weight_decay": Float(0, 1),
        "batch_size": Int(1, 65536),
        "mixup": {"alpha": Float(0, 100, low_open=True)},
        "transformer": {
            "layers": Int(1, 24),
            "heads": Int(1, 64),
            "ff_dim": Int(1, 65536),
            "dropout": Float(0, 1, high_open=True),
        },
        "logreg": {"C": Float(0, 1e6, low_open=True), "max_iter": Int(1, 1_000_000)},
    },
    "evaluate": {
        "bootstrap": Int(0, 100_000),
        "confidence": Float(0.5, 1, high_open=True),
    },
}


def check_section(key: str, rules: Any, value: Any) -> Any:
    if isinstance(rules, Mapping):
        if not isinstance(value, Mapping):
            raise ParamsError(f"params.yaml: {key}={value!r}: expected a section with keys {', '.join(rules)}")
        unknown = sorted(set(value) - set(rules), key=str)
        if unknown:
            raise ParamsError(f"params.yaml: unknown key {key}.{unknown[0]}; {key} takes {', '.join(rules)}")
        missing = [k for k in rules if k not in value]
        if missing:
            raise ParamsError(f"params.yaml: missing key {key}.{missing[0]}")
        return {k: check_section(f"{key}.{k}", rules[k], value[k]) for k in rules}
    return rules.check(key, value)


# Rules that tie two keys together: (key, other key, check, what is expected).
CROSS_RULES: tuple[tuple[str, str, Callable[[Any, Any], bool], str], ...] = (
    ("sample.min_duration_s", "sample.max_duration_s", lambda low, high: low <= high, "at most"),
)


class StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (YAML would silently keep the last)."""


def construct_unique_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ParamsError(f"params.yaml:{key_node.start_mark.line + 1}: key {key!r} is given twice")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_unique_mapping)


def dotted(params: Mapping[str, Any], key: str) -> Any:
    node: Any = params
    for part in key.split("."):
        node = node[part]
    return node


def load_params(path: Path, sections: Sequence[str]) -> dict[str, Any]:
    """Read params.yaml, validate all of it, and return the sections a stage uses.

    The whole file is checked by every stage, so a typo in `train` stops `dvc repro` at its first
    stage instead of after hours of downloading and decoding.
    """
    if not path.is_file():
        raise ParamsError(f"{path}: missing; the pipeline reads its settings from params.yaml")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=StrictLoader) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from exc
    if not isinstance(raw, Mapping):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    unknown = sorted(set(raw) - set(SCHEMA), key=str)
    if unknown:
        raise ParamsError(f"params.yaml: unknown top-level key {unknown[0]}; known keys: {', '.join(SCHEMA)}")
    missing = [section for section in SCHEMA if section not in raw]
    if missing:
        raise ParamsError(f"params.yaml: missing key {missing[0]}")
    checked = {section: check_section(section, rules, raw[section]) for section, rules in SCHEMA.items()}
    for key, other, holds, expected in CROSS_RULES:
        if not holds(dotted(checked, key), dotted(checked, other)):
            raise ParamsError(
                f"params.yaml: {key}={dotted(checked, key)!r}: expected {expected} {other}={dotted(checked, other)!r}"
            )
    return {section: checked[section] for section in sections}
