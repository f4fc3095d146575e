"""`python -m clipvideo <command>`: the project's own commands (each has `--help`)."""

from __future__ import annotations

import sys

COMMANDS = {
    "experiments": ("clipvideo.cli.experiments", "DVC's experiments with every variant's metric, in 120 columns"),
    "study": ("clipvideo.cli.study", "the reference study's protocol as one DVC experiment (needs the network)"),
    "cache": ("clipvideo.cli.cache", "the per-video cache of frames and embeddings: where, how large; clear it"),
    "check": ("clipvideo.cli.check", "check params.yaml, settings.yaml and variants.yaml, before DVC reads them"),
    "rehash": ("clipvideo.cli.rehash", "make DVC forget the hashes it remembers (finds a file changed in place)"),
    "doctor": ("clipvideo.cli.doctor", "can this environment run the pipeline? torch, torchvision, PyAV, ffmpeg"),
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        listed = "\n".join(f"  {name:<12} {text}" for name, (_, text) in COMMANDS.items())
        print(f"usage: python -m clipvideo <command> [--help]\n\ncommands:\n{listed}", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    import importlib

    return importlib.import_module(COMMANDS[argv[0]][0]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
