"""The library never flips a process-wide switch: importing it, building the encoder and training a classifier leave
the host's logging and torch's determinism as the host set them (a fresh interpreter, so imports count too)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

HOST = """
import importlib, json, logging, pkgutil, sys
import numpy as np
import torch

def switches():
    root = logging.getLogger()
    return {"root level": root.level, "disable": logging.root.manager.disable,
            "handlers": [id(h) for h in root.handlers], "filters": [id(f) for f in root.filters],
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "warn only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "threads": torch.get_num_threads(), "random state": torch.get_rng_state().sum().item()}

# the host's own choices, none of them a default
logging.getLogger().setLevel(logging.ERROR)
logging.getLogger().addHandler(logging.StreamHandler(sys.stderr))
logging.disable(logging.INFO)
torch.use_deterministic_algorithms(True, warn_only=True)
torch.manual_seed(11)
seen = {"set": switches()}

import clipvideo
for module in pkgutil.walk_packages(clipvideo.__path__, "clipvideo."):
    importlib.import_module(module.name)
seen["imported"] = switches()

from clipvideo.embed.encoder import load_encoder
from clipvideo.modeling.classifiers import LinearProbe
from clipvideo.modeling.training import TrainConfig, fit_logreg, train_classifier
probes = [LinearProbe(4, 2), LinearProbe(4, 2)]  # the host's own draws from its random stream
seen["built"] = switches()
load_encoder(sys.argv[1], "none", seed=0)
rng = np.random.default_rng(0)
frames, mask, labels = rng.normal(size=(8, 3, 4)).astype(np.float16), np.ones((8, 3), bool), np.arange(8) % 2
train_classifier(probes.pop(), frames, mask, labels, TrainConfig(epochs=1, lr=0.01, weight_decay=0.0,
                                                                      batch_size=4, seed=3))
fit_logreg(frames, mask, labels, 2, c=1.0, max_iter=5)
seen["ran"] = switches()
torch.use_deterministic_algorithms(False)
logging.disable(logging.NOTSET)
load_encoder(sys.argv[1], "none", seed=0)
train_classifier(probes.pop(), frames, mask, labels, TrainConfig(epochs=1, lr=0.01, weight_decay=0.0,
                                                                      batch_size=4, seed=3))
seen["off"] = switches()
print(json.dumps(seen))
"""


def test_the_library_leaves_the_hosts_logging_and_torch_determinism_as_set(tiny_model_config: Path):
    result = subprocess.run(
        [sys.executable, "-c", HOST, str(tiny_model_config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["set"]["deterministic"] and seen["set"]["warn only"] and seen["set"]["disable"] == 20
    assert seen["imported"] == seen["set"]
    assert seen["built"] == {**seen["set"], "random state": seen["built"]["random state"]}
    assert seen["ran"] == seen["built"]  # nor the random stream: the encoder's init and training fork it
    assert seen["off"] == {**seen["built"], "deterministic": False, "warn only": False, "disable": 0}
