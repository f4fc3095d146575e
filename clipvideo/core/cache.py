"""The per-video cache: what the frames and embed steps made for one video, kept across runs, so a rerun pays
only for the videos that changed.

An entry's key is a hash of everything that decides its bytes: the content of its input (a video's bytes, a
frames file's bytes: never a name, size or time) and the recipe (params, encoder, code, and the runtime fingerprint:
the libraries, device and precision path that made the bytes). An entry is a record
(JSON) and, where there is one, a payload file (the frames `.npz`, the embeddings `.npy`). The payload is
written first and the record last, both atomically under names unique to the writer, and the record names the
payload's SHA-256: an entry without its record does not exist, and a payload that does not match its record
(truncated, changed in place) is removed and recomputed, never served. Several processes may use one cache at
once (queued experiments): they write the same bytes under the same names, so none can tear another's entry.

The cache is capped: past `cache.max_gb` the least recently used entries go (a use touches its record), never
one the current run used. It lives in DVC's cache folder by default, which every workspace of the repository
shares, the temporary ones of `dvc exp run --queue` included, and which git and DVC ignore. With `cache.enabled:
false` a run neither reads nor writes it (PrivateCache).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from clipvideo.core.files import TMP_SUFFIX, atomic_path, remove_path, write_bytes_atomic
from clipvideo.core.system import available_cores

RECORD = ".json"
STALE_TEMPORARY_S = 3600  # a writer's temporary this old belongs to a process that died


def sha256_file(path: Path, chunk: int = 4 * 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def code_digest(code: Sequence[Path]) -> str:
    """SHA-256 of the code files (every .py file of a code folder), in a stable order: part of a recipe."""
    digest = hashlib.sha256()
    for source in code:
        for path in sorted(source.rglob("*.py")) if source.is_dir() else [source]:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def writer_is_gone(temporary: Path) -> bool:
    """A temporary `.<name>.<pid>.<token>.tmp` whose writer is no longer running on this machine (killed)."""
    try:
        os.kill(int(temporary.name.rsplit(".", 3)[-3]), 0)
    except (ValueError, IndexError, OverflowError):
        return False  # not a name this cache writes
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


def entry_key(parts: Mapping[str, Any]) -> str:
    """The key of an entry made from exactly these inputs (content hashes, params, code digests)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    record: dict[str, Any]  # what the producer stored besides the payload (a frames.csv row, a shape)
    payload: Path | None  # the payload file, when the entry has one


class VideoCache:
    """Entries of one kind (`frames`, `embeddings`) under `root/<kind>/<key[:2]>/<key>`."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.used: set[Path] = set()  # records this process used or wrote: never evicted by it

    def _record(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}{RECORD}"

    def get(self, kind: str, key: str) -> Entry | None:
        """The entry, checked against its record; None when there is none or it is damaged (then removed)."""
        record_path = self._record(kind, key)
        if not record_path.is_file():
            return None
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            payload = record_path.with_suffix(record["suffix"]) if record["suffix"] else None
            if payload is not None and sha256_file(payload) != record["sha256"]:
                raise ValueError("the payload does not match its record")
            os.utime(record_path)  # a use, for the least-recently-used order
        except (OSError, ValueError, KeyError, TypeError):  # damaged (or evicted meanwhile): recomputed
            self.discard(kind, key)
            return None
        self.used.add(record_path)
        return Entry(record["record"], payload)

    def put(
        self,
        kind: str,
        key: str,
        record: dict[str, Any],
        payload: bytes | None = None,
        suffix: str = "",
        made_with: Mapping[str, Any] | None = None,
    ) -> Entry:
        """Store an entry: the payload first, then the record that names its hash (the entry exists from then).
        `made_with`: the runtime fingerprint that made it (part of its key), kept for `cache info`."""
        record_path = self._record(kind, key)
        payload_path = None
        stored: dict[str, Any] = {"record": record, "suffix": "", "sha256": "", "made_with": made_with}
        if payload is not None:
            payload_path = record_path.with_suffix(suffix)
            write_bytes_atomic(payload_path, payload, shared=True)
            stored.update(suffix=suffix, sha256=hashlib.sha256(payload).hexdigest())
        with atomic_path(record_path, shared=True) as tmp:
            tmp.write_text(json.dumps(stored), encoding="utf-8")
        self.used.add(record_path)
        return Entry(record, payload_path)

    def discard(self, kind: str, key: str) -> None:
        self._remove(self._record(kind, key))

    @staticmethod
    def _remove(record_path: Path) -> None:
        """Remove an entry: its record first (from then on the entry does not exist), then its payload."""
        record_path.unlink(missing_ok=True)
        for payload in record_path.parent.glob(f"{record_path.stem}.*"):
            payload.unlink(missing_ok=True)

    def files(self) -> list[tuple[Path, os.stat_result]]:
        found = []
        for path in self.root.rglob("*"):
            try:
                if path.is_file():
                    found.append((path, path.stat()))
            except FileNotFoundError:  # another process evicted it meanwhile
                continue
        return found

    def usage(self) -> tuple[int, int]:
        """(entries, bytes) in the cache."""
        files = self.files()
        return sum(path.suffix == RECORD for path, _ in files), sum(stat.st_size for _, stat in files)

    def fingerprints(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(kind, the runtime fingerprint as JSON: `null` for entries that predate it) -> (entries, bytes)."""
        sizes: dict[Path, int] = {}  # an entry's record and payload together, by the entry's path without suffix
        records = []
        for path, stat in self.files():
            if path.name.endswith(TMP_SUFFIX):
                continue
            sizes[path.with_suffix("")] = sizes.get(path.with_suffix(""), 0) + stat.st_size
            if path.suffix == RECORD:
                records.append(path)
        found: dict[tuple[str, str], tuple[int, int]] = {}
        for path in records:
            try:
                made_with = json.loads(path.read_text(encoding="utf-8")).get("made_with")
            except (OSError, ValueError, AttributeError):  # evicted meanwhile, or damaged: get() removes it
                continue
            group = (path.relative_to(self.root).parts[0], json.dumps(made_with))  # in the producer's order
            entries, size = found.get(group, (0, 0))
            found[group] = (entries + 1, size + sizes[path.with_suffix("")])
        return found

    def evict(self) -> int:
        """Remove the temporaries that dead writers left, then the least recently used entries until the cache fits
        its cap (never one this process used). Returns the entries removed."""
        now = time.time()
        files: list[tuple[Path, os.stat_result]] = []
        for path, stat in self.files():
            if path.name.endswith(TMP_SUFFIX) and (writer_is_gone(path) or now - stat.st_mtime > STALE_TEMPORARY_S):
                path.unlink(missing_ok=True)  # gone: no longer counted
            else:
                files.append((path, stat))
        total = sum(stat.st_size for _, stat in files)
        if total <= self.max_bytes:
            return 0
        sizes: dict[Path, int] = {}  # an entry's record and payload together, by the entry's path without suffix
        for path, stat in files:
            sizes[path.with_suffix("")] = sizes.get(path.with_suffix(""), 0) + stat.st_size
        records = sorted((stat.st_mtime, path) for path, stat in files if path.suffix == RECORD)
        removed = 0
        for _, record_path in records:
            if total <= self.max_bytes:
                break
            if record_path in self.used:
                continue
            self._remove(record_path)
            total -= sizes[record_path.with_suffix("")]
            removed += 1
        return removed

    def clear(self) -> None:
        remove_path(self.root)

    def describe(self) -> str:
        entries, size = self.usage()
        counted = f"{entries} {'entry' if entries == 1 else 'entries'}"
        return f"{self.root}: {counted}, {size / 1e6:.1f} MB of {self.max_bytes / 1e9:g} GB"


class PrivateCache(VideoCache):
    """`cache.enabled: false`: the shared cache is neither read nor written. A run keeps what it makes in a private
    folder under `scratch` (on the outputs' file system, so the frames stage still links instead of copying), which
    `evict` (at the end of a run) or the end of the process removes whole."""

    def __init__(self, scratch: Path) -> None:
        folder = Path(tempfile.mkdtemp(prefix=".uncached-", dir=scratch))
        super().__init__(folder, 0)
        self._remove_folder = weakref.finalize(self, shutil.rmtree, folder, True)

    def get(self, kind: str, key: str) -> Entry | None:
        return None  # no reads

    def evict(self) -> int:
        self._remove_folder()
        return 0


def dvc_cache_dir(root: Path) -> Path | None:
    """DVC's local cache folder for the repository at `root` (also what a queued experiment's temporary
    workspace is given), or None outside a DVC repository."""
    try:
        from dvc.repo import Repo
    except ImportError:
        return None
    try:
        with Repo(str(root)) as repo:
            return Path(repo.cache.local_cache_dir)
    except Exception:  # not a DVC repository (a bare --root), or one DVC cannot read: the fallback serves
        return None


def cache_root(root: Path, configured: str | None) -> Path:
    """cache.dir when set (relative to the project), else `clipvideo/` in DVC's cache folder, else (outside a DVC
    repository) `.clipvideo-cache/` in the project."""
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_absolute() else root / path
    dvc_cache = dvc_cache_dir(root)
    return dvc_cache / "clipvideo" if dvc_cache else root / ".clipvideo-cache"


def open_cache(
    root: Path, configured_dir: str | None, max_gb: float, enabled: bool = True, scratch: Path | None = None
) -> VideoCache:
    """The shared cache; or, when not `enabled`, a PrivateCache under `scratch` (default: `root`)."""
    if not enabled:
        return PrivateCache((scratch or root).absolute())
    return VideoCache(cache_root(root, configured_dir).absolute(), int(max_gb * 1e9))


def sha256_files(paths: Sequence[Path], desc: str, unit: str = "file") -> list[str]:
    """sha256_file of every path, in order, in threads (hashlib releases the GIL), with a progress bar."""
    with ThreadPoolExecutor(available_cores()) as pool:
        return list(tqdm(pool.map(sha256_file, paths), total=len(paths), desc=desc, unit=unit, leave=False))
