"""The decoder fingerprint: the libraries that make a frames file's bytes, PyAV with its FFmpeg libraries (decoding,
scaling: libswscale) and Pillow with its JPEG library (the frame store's encoder, store.py). Another version of any
may give other bytes for the same video, so the frames cache keys its entries by this, data/frames/settings.json
records it, and a Ray worker whose fingerprint differs from the stage's refuses to decode.
"""

from __future__ import annotations

from typing import Any

import av
import PIL
from PIL import features


def decoder_fingerprint() -> dict[str, Any]:
    """PyAV's and FFmpeg's versions (each library the decoder links), Pillow's and its libjpeg's: JSON values."""
    return {
        "av": av.__version__,
        "ffmpeg": {name: ".".join(map(str, version)) for name, version in sorted(av.library_versions.items())},
        "pillow": PIL.__version__,
        "libjpeg": features.version("jpg"),  # the libjpeg API version Pillow was built against
        "libjpeg_turbo": features.version("libjpeg_turbo"),  # None for plain libjpeg
    }
