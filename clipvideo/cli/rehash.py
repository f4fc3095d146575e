"""`python -m clipvideo rehash`: make DVC forget the file hashes it remembers, so `dvc status` hashes every
output again and finds one changed in place (same size and modification time).

DVC keeps those hashes in its site cache, outside the repository (`/var/tmp/dvc/repo/<token>/hashes`). This
finds that folder through DVC's own API for the repository at the current directory and removes it; it refuses
outside a DVC repository, and any folder that is not inside DVC's site cache. Then: `dvc status`, and `dvc
checkout --relink --force` to put the cached copies back (docs/operations.md, "A file is changed in place").
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from clipvideo.cli.stage import command_parser
from clipvideo.core.errors import PipelineError

HASHES = "hashes"  # DVC's folder of remembered hashes inside a repository's site cache folder


def hashes_folder() -> Path:
    """The repository's remembered-hashes folder, checked to lie in DVC's site cache; PipelineError otherwise."""
    from dvc.dirs import site_cache_dir
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        repo = Repo(uninitialized=False)
    except NotDvcRepoError:
        raise PipelineError(f"{Path.cwd()} is not inside a DVC repository; run it in the project") from None
    with repo:
        site = Path(repo.site_cache_dir)
        repos = Path(site_cache_dir(repo.config["core"].get("site_cache_dir"))) / "repo"
    folder = site / HASHES
    if site.is_symlink() or folder.is_symlink() or site.resolve().parent != repos.resolve():
        raise PipelineError(
            f"DVC names {folder} for this repository, which is not a folder of DVC's site cache "
            f"({repos}/<token>/{HASHES}); nothing removed"
        )
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser("python -m clipvideo rehash", __doc__, root=False)
    parser.parse_args(argv)
    try:
        folder = hashes_folder()
    except PipelineError as exc:
        print(f"rehash: error: {exc}", file=sys.stderr)
        return 2
    if not folder.exists():
        print(f"rehash: {folder} does not exist: DVC remembers no hashes for this repository")
        return 0
    shutil.rmtree(folder)
    print(f"rehash: removed {folder}; `dvc status` now hashes every output again")
    return 0
