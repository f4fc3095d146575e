"""Reading params.yaml and settings.yaml: safe YAML, validated in full, every error one line.

Every error names the file, the key, the offending value (cut short) and what is allowed, in the words of
the schema (config.schema), so `dvc exp run -S frames_count=abc` fails fast and says why.
"""

from __future__ import annotations

import difflib
import os
import stat
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from clipvideo.config.schema import Expect, Params, Section, Settings
from clipvideo.core.errors import ParamsError
from clipvideo.core.text import quoted, shorten

MAX_FILE_BYTES = 1024 * 1024  # the files are a few KB; anything larger is not one of them
SETTINGS_ENV = "CLIPVIDEO_SETTINGS"  # another settings file, e.g. per machine of a cluster
SectionT = TypeVar("SectionT", bound=Section)


class NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without anchors and aliases (an alias bomb expands to gigabytes) or repeated keys."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ParamsError(
                f"{self.name}:{event.start_mark.line + 1}: YAML anchors and aliases (& and *) are not "
                "allowed here; write each value out"
            )
        return super().compose_node(parent, index)  # type: ignore[misc]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ParamsError(f"{self.name}:{key_node.start_mark.line + 1}: key {key!r} is given twice")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


MISSING = "missing"


def not_a_file(path: Path) -> str | None:
    """What `path` is when it is not a regular file (links followed, and named): MISSING when nothing is
    there, else a phrase for a one-line error; None for a file."""
    link = f"a link to {path.resolve()}, " if path.is_symlink() else ""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"{link}which does not exist" if link else MISSING
    except OSError as exc:
        return f"{link}unreadable ({exc.strerror})"
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
    )
    kind = next((kind for test, kind in kinds if test(mode)), None)
    return f"{link}{kind}" if kind else None


def read_yaml(path: Path, label: str) -> Any:
    """The file's YAML document, or one line saying why it cannot be read (what the path is, when it is
    not a regular file: a directory, or a link to /dev/zero, would otherwise fail or hang)."""
    kind = not_a_file(path)
    if kind:
        raise ParamsError(f"{label}: {kind}; expected a YAML file")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)  # never more, even if the file grows meanwhile
    except OSError as exc:
        raise ParamsError(f"{label}: cannot read it ({exc.strerror})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ParamsError(f"{label}: more than {MAX_FILE_BYTES} bytes; expected a small YAML file")
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
        raise ParamsError(f"{label}: not valid YAML ({shorten(' '.join(str(exc).split()), 203)})") from None
    finally:
        loader.dispose()


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


def unknown_key(key: str, location: tuple[str | int, ...], holder: type[BaseModel], model: type[BaseModel]) -> str:
    """What an unknown key probably is: a key of the other file, or a typo of a known key; then what is known."""
    parent = ".".join(map(str, location[:-1]))
    known = ", ".join(holder.model_fields)
    known_text = f"{parent} takes {known}" if parent else f"known keys: {known}"
    for other, name, kind in ((Settings, "settings.yaml", "a setting"), (Params, "params.yaml", "a DVC param")):
        if model is not other and has_key(other, key):
            return f"{key} is {kind}: set it in {name}, not here ({known_text})"
    nearest = difflib.get_close_matches(str(location[-1]), list(holder.model_fields), n=1, cutoff=0.6)
    guess = f"did you mean {'.'.join(filter(None, (parent, nearest[0])))}? " if nearest else ""
    return guess + known_text


def one_line(error: dict[str, Any], model: type[BaseModel], label: str) -> str:
    """pydantic's first error as `label: key=value: expected ...` (or unknown/missing key)."""
    location = tuple(part for part in error["loc"] if not isinstance(part, int))
    key = ".".join(map(str, location))
    holder, info = field_at(model, location)
    if error["type"] == "extra_forbidden":
        where = "top-level key" if len(location) == 1 else "key"
        return f"{label}: unknown {where} {key}; {unknown_key(key, location, holder, model)}"
    if error["type"] == "missing":
        return f"{label}: missing key {key}"
    if info is None:  # a model-level rule: the message was made by the rule
        return f"{label}: {error['msg']}"
    return f"{label}: {key}={quoted(error['input'])}: expected {constraint_text(info)}"


def validated(model: type[SectionT], raw: Any, label: str) -> SectionT:
    if not isinstance(raw, Mapping):
        raise ParamsError(f"{label}: expected a mapping of sections at the top level")
    try:
        return model.model_validate(raw)  # a cross-key rule raises its own ParamsError
    except ValidationError as exc:
        raise ParamsError(one_line(exc.errors()[0], model, label)) from None


def load_params(path: Path) -> Params:
    """Read params.yaml and validate all of it: every stage checks the whole file before any work, so a
    typo in `train` stops `dvc repro` at its first stage, not after hours of downloading."""
    if not_a_file(path) == MISSING:
        raise ParamsError(f"{path}: missing; the pipeline reads what changes its results from params.yaml")
    return validated(Params, read_yaml(path, "params.yaml") or {}, "params.yaml")


def load_settings(path: Path) -> Settings:
    """Read settings.yaml (`path`, or the file CLIPVIDEO_SETTINGS names); a missing file or key takes the default
    (settings never change a result). Only a path that does not exist at all is a missing file: a directory or a
    device is an error naming it."""
    named = os.environ.get(SETTINGS_ENV)
    path = Path(named) if named else path
    label = f"{SETTINGS_ENV}={str(path)!r}" if named else path.name
    if not_a_file(path) == MISSING:
        if named:
            raise ParamsError(f"{label}: no such file")
        return Settings()
    return validated(Settings, read_yaml(path, label) or {}, label)


def has_key(model: Any, key: str) -> bool:
    """True when `key` (dotted) names a section or a value of `model` (Params: params.yaml, Settings: settings.yaml)."""
    for part in key.split("."):
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return False
        model = model.model_fields[part].annotation
    return True


def leaf_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, FieldInfo]]:
    """Every value key of `model`, dotted, with its field: what the docs' tables and the typo hints list."""
    rows = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += leaf_fields(annotation, f"{prefix}{name}.")
        else:
            rows.append((f"{prefix}{name}", info))
    return rows
