"""Is the committed dvc.lock the lock of the committed code and params? CI runs this in a fresh clone.

`dvc status` there reports every output as missing (no data was pulled): that is fine. A stage whose code,
params or command changed since the lock was written is not: every new clone would recompute it, and a
`dvc pull` from the team cache would not give a no-op `dvc repro`. Fix: `dvc repro`, then commit dvc.lock.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

MISSING = {"deleted", "not in cache"}  # what a clone without data says of a data dependency: not staleness


def stale_stages(status: dict[str, Any]) -> dict[str, list[str]]:
    """stage -> what changed in it, from `dvc status --json`, ignoring data that is merely absent."""
    stale: dict[str, list[str]] = {}
    for stage, changes in status.items():
        for change in changes if isinstance(changes, list) else [changes]:
            if change == "changed command":
                stale.setdefault(stage, []).append("its command")
            if not isinstance(change, dict):
                continue
            for kind in ("changed deps", "changed params"):
                for name, how in change.get(kind, {}).items():
                    if isinstance(how, dict):  # a params file: key -> how
                        stale.setdefault(stage, []).extend(f"{key} ({what})" for key, what in how.items())
                    elif how not in MISSING:
                        stale.setdefault(stage, []).append(f"{name} ({how})")
    return stale


def main(root: Path = Path(".")) -> int:
    result = subprocess.run(["dvc", "status", "--json"], cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        print(f"check_lock: `dvc status --json` failed: {result.stderr.strip()[-500:]}", file=sys.stderr)
        return 2
    stale = stale_stages(json.loads(result.stdout or "{}"))
    for stage, what in sorted(stale.items()):
        print(f"dvc.lock is stale for {stage}: {', '.join(what)}", file=sys.stderr)
    if stale:
        print("run `dvc repro` and commit dvc.lock with the code", file=sys.stderr)
        return 1
    print("dvc.lock matches the committed code, params and commands of every stage")
    return 0


if __name__ == "__main__":
    sys.exit(main())
