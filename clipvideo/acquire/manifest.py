"""The manifest step: every source row once, `valid` or `invalid` with a reason -> data/manifest.csv.

The source is the offline sample (rendered here with real ffmpeg), the Kaggle CSV (fetched with kagglehub
when missing), any CSV of links, or a folder per category (acquire.folder). Rows are judged by their text
alone, except local files, which are hashed (their id is a digest of their bytes); nothing here decodes a video.
"""

from __future__ import annotations

import csv
import functools
import shutil
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from tabulate import tabulate
from tqdm import tqdm

from clipvideo.acquire.fetch import VIDEO_SUFFIXES
from clipvideo.acquire.folder import folder_rows, source_categories
from clipvideo.acquire.links import (
    CONFLICTING_LABELS,
    DUPLICATE,
    EMPTY_CATEGORY,
    MALFORMED_ID,
    MAX_LINK_CHARS,
    MISSING_FILE,
    NOT_A_VIDEO,
    OUTSIDE_PATH,
    UNKNOWN_CATEGORY,
    Link,
    LinkError,
    parse_link,
    reason_kind,
)
from clipvideo.acquire.sample import SampleVideo, generate_sample
from clipvideo.acquire.series import series_key
from clipvideo.config.schema import DatasetParams, SampleParams
from clipvideo.core.cache import sha256_file
from clipvideo.core.contracts import MANIFEST_COLUMNS, MAX_TEXT_CHARS, SOURCE_COLUMNS, Status
from clipvideo.core.errors import PipelineError
from clipvideo.core.files import atomic_path
from clipvideo.core.ids import YOUTUBE_ID, url_id
from clipvideo.core.paths import ProjectPaths
from clipvideo.core.tables import field_limit, write_table
from clipvideo.core.text import clipped, escaped, printable, quoted, shorten

KAGGLE_DATASET = "rajatrc1705/youtube-videos-dataset"
KAGGLE_PAGE = f"https://www.kaggle.com/datasets/{KAGGLE_DATASET}"


def read_source_csv(path: Path) -> list[dict[str, str]]:
    """The Kaggle CSV (link,title,description,category; quoted multi-line fields) as dicts."""
    reader = None
    try:
        with field_limit(), path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in SOURCE_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise PipelineError(
                    f"{path}: missing column(s) {', '.join(missing)}; expected a CSV with columns "
                    "link,title,description,category (the Kaggle youtube-videos-dataset)"
                )
            return list(reader)
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x})") from None
    except csv.Error as exc:
        line = f":{reader.line_num + 1}" if reader is not None else ""  # line_num counts the lines done before it
        raise PipelineError(f"{path}{line}: not a readable CSV ({exc})") from None


LinkParser = Callable[[str], Link]


def relative_links(csv_path: Path, root: Path, allow_outside: bool) -> LinkParser:
    """parse_link, plus paths relative to the CSV's folder (the csv source): a local video file, read in place,
    whose id is a digest of its bytes (as in the folder source). A path that leaves the CSV's folder (`..`, an
    absolute path, a symlink) is refused unless dataset.allow_outside_links is true."""
    base = csv_path.parent
    top = base.resolve()

    @functools.cache
    def parse(link: str) -> Link:
        text = link.strip()
        if "://" in text or YOUTUBE_ID.fullmatch(text) or not text:
            return parse_link(link)
        if not text.isprintable() or len(text) > MAX_LINK_CHARS:
            raise LinkError(MALFORMED_ID, f"{quoted(text)}: not a printable path of at most {MAX_LINK_CHARS} chars")
        path = base / text
        if not allow_outside and (Path(text).is_absolute() or not path.resolve().is_relative_to(top)):
            raise LinkError(
                OUTSIDE_PATH, f"{quoted(text)} leaves the CSV's folder (dataset.allow_outside_links is false)"
            )
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise LinkError(
                NOT_A_VIDEO,
                f"{quoted(text)}; expected a YouTube id, an http(s) url or a video file ({', '.join(VIDEO_SUFFIXES)})",
            )
        if not path.is_file():
            raise LinkError(MISSING_FILE, f"{quoted(text)} is not a file next to {csv_path.name}")
        url = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()
        return Link(sha256_file(path)[:16], url)

    return parse


def conflicting_labels(source: list[dict[str, str]], parse: LinkParser = parse_link) -> dict[str, str]:
    """id -> which rows label it how, for every video that rows label with different categories: such a video has
    no true label, so all its rows are `invalid` (counted under CONFLICTING_LABELS), not the first one's."""
    labels: dict[str, dict[str, int]] = {}
    for number, record in enumerate(source, start=1):
        try:
            video_id = parse(record.get("link") or "").id
        except LinkError:
            continue
        labels.setdefault(video_id, {}).setdefault((record.get("category") or "").strip(), number)
    return {
        video_id: ", ".join(f"{quoted(c, 30)} on row {n}" for c, n in rows.items())
        for video_id, rows in labels.items()
        if len(rows) > 1
    }


def youtube_rows(
    source: list[dict[str, str]], categories: list[str], parse: LinkParser = parse_link
) -> list[dict[str, str]]:
    """Manifest rows for the CSV rows, in order: valid, or invalid with the first reason that applies.

    An invalid row gets the id `row-<n>` (n counts data rows from 1): ids stay unique, and such an id
    can never pass `is_safe_id`, so it never becomes a path.
    """
    known = set(categories)
    conflicts = conflicting_labels(source, parse)
    first_row: dict[str, tuple[int, str]] = {}
    rows = []
    for number, record in enumerate(source, start=1):
        link = record.get("link") or ""
        category = (record.get("category") or "").strip()  # matched as given: `fo\nod` is not `food`
        title = clipped(" ".join(printable(record.get("title") or "").split()), MAX_TEXT_CHARS)
        series = series_key(record.get("title") or "", record.get("description") or "")
        try:
            parsed = parse(link)
            if not category:
                raise LinkError(EMPTY_CATEGORY, "expected one of " + ", ".join(categories))
            if parsed.id in conflicts:
                raise LinkError(CONFLICTING_LABELS, conflicts[parsed.id])
            if category not in known:
                raise LinkError(UNKNOWN_CATEGORY, f"{quoted(category)}, expected one of {', '.join(categories)}")
            if parsed.id in first_row:
                other, other_category = first_row[parsed.id]
                raise LinkError(DUPLICATE, f"same video as row {other} (labelled {other_category})")
        except LinkError as exc:
            rows.append(
                {
                    "id": f"row-{number}",
                    "url": clipped(escaped(link.strip()), MAX_TEXT_CHARS),
                    "category": clipped(escaped(category), MAX_TEXT_CHARS),
                    "title": title,
                    "series": series,
                    "status": Status.INVALID,
                    "reason": str(exc),
                }
            )
            continue
        first_row[parsed.id] = (number, category)
        valid = {"id": parsed.id, "url": parsed.url, "category": category, "title": title, "series": series}
        rows.append({**valid, "status": Status.VALID, "reason": ""})
    return rows


def sample_rows(videos: Iterable[SampleVideo], root: Path) -> list[dict[str, str]]:
    """Manifest rows for locally rendered videos, each given by its path relative to the project (the url)."""
    rows = []
    for video in videos:
        url = video.path.relative_to(root).as_posix()
        row = {"id": url_id(url), "url": url, "category": video.category, "title": video.title, "series": video.series}
        rows.append({**row, "status": Status.VALID, "reason": ""})
    return rows


def remove_sample(paths: ProjectPaths) -> None:
    """Remove data/sample/ (what an earlier run rendered); unlike core.files.remove_path, a file that cannot be
    removed is an error, never a stale video left in the DVC out."""
    if paths.sample_videos.exists():
        shutil.rmtree(paths.sample_videos)


def build_sample_manifest(paths: ProjectPaths, categories: list[str], sample: SampleParams) -> list[dict]:
    """Render the synthetic sample under data/sample/ (a progress bar: about 1.5 s a video) and list it."""
    remove_sample(paths)
    videos = generate_sample(paths.sample_videos, categories, sample, sample.seed)
    total = len(categories) * sample.videos_per_category
    rendered = tqdm(videos, total=total, desc="manifest: rendering the sample", unit="video")
    return sample_rows(rendered, paths.root)


def fetch_with_kagglehub(csv_path: Path, configured: str) -> None:
    """Download the Kaggle dataset into kagglehub's cache and copy its CSV to `csv_path` (dataset.csv=`configured`)."""
    try:
        import kagglehub

        folder = Path(kagglehub.dataset_download(KAGGLE_DATASET))
    except Exception as exc:  # no network, no credentials, API changes: all end the same way for the user
        detail = str(exc).splitlines()[0][:160] if str(exc) else "no message"
        raise PipelineError(
            f"dataset.csv={configured!r} does not exist and kagglehub could not fetch {KAGGLE_DATASET} "
            f"({type(exc).__name__}: {detail}); "
            f"download the CSV from {KAGGLE_PAGE} and save it as {configured} (or set dataset.csv)"
        ) from exc
    found = sorted(folder.rglob("*.csv"))
    if len(found) != 1:
        raise PipelineError(
            f"kagglehub fetched {KAGGLE_DATASET} into {folder} but found {len(found)} CSV files there, expected 1; "
            f"copy the right one to {configured}"
        )
    with atomic_path(csv_path) as tmp:
        shutil.copyfile(found[0], tmp)
    print(f"manifest: fetched {KAGGLE_DATASET} with kagglehub -> {configured}")


def build_csv_manifest(paths: ProjectPaths, dataset: DatasetParams, categories: list[str]) -> list[dict]:
    """Judge every row of the CSV offline (youtube: the Kaggle CSV, fetched when missing; csv: any CSV, whose
    relative paths name local videos); data/sample/ is left empty (it is a DVC out)."""
    csv_path = paths.root / dataset.csv
    if not csv_path.is_file():
        if dataset.source != "youtube":
            raise PipelineError(
                f"params.yaml: dataset.csv={dataset.csv!r}: no such file (expected a CSV with columns link,category)"
            )
        fetch_with_kagglehub(csv_path, dataset.csv)
    parse = relative_links(csv_path, paths.root, dataset.allow_outside_links) if dataset.source == "csv" else parse_link
    rows = youtube_rows(read_source_csv(csv_path), categories, parse)
    empty_sample(paths)
    return rows


def empty_sample(paths: ProjectPaths) -> None:
    remove_sample(paths)
    paths.sample_videos.mkdir(parents=True)


def counts_table(rows: list[dict], categories: list[str]) -> str:
    """Valid and invalid rows per category, then the invalid rows per reason kind: two narrow tables, so a
    terminal never wraps one (a wrapped header runs its column names together)."""
    statuses = [Status.VALID.value, Status.INVALID.value]
    counts = Counter((row["category"], row["status"]) for row in rows)
    totals = Counter(row["status"] for row in rows)
    others = sorted({category for category, _ in counts} - set(categories))
    labelled = [(c, c) for c in categories] + [(f"'{shorten(c, 22)}'", c) for c in others]  # 'total' is not total
    body = [[label, *(counts[(c, s)] for s in statuses)] for label, c in labelled]
    body.append(["total", *(totals[s] for s in statuses)])
    table = tabulate(body, headers=["category", *statuses], tablefmt="simple")
    kinds = Counter(reason_kind(row["reason"]) for row in rows if row["status"] == Status.INVALID)
    if kinds:
        by_kind = sorted(kinds.items(), key=lambda item: (-item[1], item[0]))
        table += "\n\n" + tabulate(by_kind, headers=["invalid: reason", "rows"], tablefmt="simple")
    return table


def make_manifest(paths: ProjectPaths, dataset: DatasetParams, sample: SampleParams) -> str:
    """The manifest of the source params.yaml names; prints the counts, returns the summary line."""
    categories = source_categories(dataset, paths.root)
    if dataset.source == "sample":
        rows = build_sample_manifest(paths, categories, sample)
    elif dataset.source == "folder":
        rows = folder_rows(dataset, paths.root, categories)
        empty_sample(paths)
    else:
        rows = build_csv_manifest(paths, dataset, categories)
    write_table(paths.manifest, MANIFEST_COLUMNS, rows)
    print(counts_table(rows, categories))
    valid = sum(row["status"] == Status.VALID for row in rows)
    return f"{len(rows)} rows ({valid} valid) -> {paths.manifest}"
