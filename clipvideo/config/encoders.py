"""Files that change a result are dependencies: a model config or a checkpoint that params.yaml names by path must
live under the project's `encoders/` folder, which dvc.yaml lists as a dependency of embed and embed_text, so
replacing such a file reruns them (DVC cannot make a dependency follow a param: docs/decisions/encoder-files.md).

A params-level check (check_params, embed, embed_text run it), not a property of the loader: library functions and
predict take a config or checkpoint from anywhere.
"""

from __future__ import annotations

from pathlib import Path

from clipvideo.config.schema import EmbedParams
from clipvideo.core.errors import ParamsError

ENCODERS_DIR = "encoders"


def encoder_files(embed: EmbedParams, root: Path) -> dict[str, str]:
    """The `embed` keys whose values name files -> the values: a model config `.json` (as open_clip takes one); a
    checkpoint given as an absolute path, a path with a folder, or a file of the project (a tag is none of these)."""
    named = {}
    if embed.model.endswith(".json"):
        named["embed.model"] = embed.model
    pretrained = embed.pretrained
    if pretrained != "none" and (
        Path(pretrained).is_absolute() or any(sep in pretrained for sep in "/\\") or (root / pretrained).exists()
    ):
        named["embed.pretrained"] = pretrained
    return named


def check_encoder_files(embed: EmbedParams, root: Path) -> None:
    """Refuse, in one line, a model config or checkpoint path outside `<root>/encoders/` (DVC would not see it)."""
    encoders = (root / ENCODERS_DIR).resolve()
    for key, value in encoder_files(embed, root).items():
        if not (root / value).resolve().is_relative_to(encoders):  # an absolute value stays as it is
            raise ParamsError(
                f"params.yaml: {key}={value!r}: a file outside the project's {ENCODERS_DIR}/ folder, which DVC does "
                f"not track (replacing it would rerun nothing); copy it to {ENCODERS_DIR}/ and set {key}: "
                f"{ENCODERS_DIR}/{Path(value).name}"
            )
