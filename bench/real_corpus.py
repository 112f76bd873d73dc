"""Gather a real-world documentation corpus from this machine, for benchmarks that must not run on our own text.

    python bench/real_corpus.py /tmp/real-corpus                 # >= 25 MB or exit 2
    python bench/real_corpus.py /tmp/real-corpus --json          # only the JSON line of figures

Generated corpora are uniform and clean; what users bring is not. This copies documentation nobody on the team
wrote from two places that exist on every build of this image, without network access:

* ``/usr/share/doc`` (Debian packages): changelogs, NEWS, README, copyright files, HTML and text manuals;
  ``*.gz`` files are decompressed and lose the ``.gz``. Bytes are kept as they are, so the Latin-1 NEWS files
  and megabyte changelogs reach the ingestion untouched.
* the project's site-packages: ``*.dist-info/METADATA`` (long descriptions in Markdown/RST), license files and
  the ``.md``/``.rst``/``.txt``/``.html`` documentation packages ship, minus test data and packages installed
  from a local path (the project itself).

Layout: ``usr-share-doc/<package>/<file>`` and ``site-packages/<distribution>/<path in site-packages>``. The walk
is sorted, so two runs on the same machine give the same corpus. Symlinks, empty files, hidden files and binary
files (a NUL byte in the first 8 KB) are left out. Files over ``--max-file-mb`` are left out too, except
``--keep-oversize`` distinct ones spread from the smallest to the largest, so the ingestion meets "too large".
MB means 10**6 bytes, the unit of the ingestion's ``max_document_bytes`` cap (2,000,000 by default).

The corpus is never committed: OUT_DIR is wiped and refilled on every run. It refuses a non-empty OUT_DIR
that does not hold the ``.real-corpus`` marker this script writes (ingestion skips hidden files).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import sys
import sysconfig
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import Distribution, distributions
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parents[1]
MARKER = ".real-corpus"
MB = 1_000_000
SNIFF_BYTES = 8192
DOC_ROOT = Path("/usr/share/doc")

# Documentation by suffix (after any .gz is dropped).
DOC_SUFFIXES = {".txt", ".text", ".md", ".markdown", ".rst", ".html", ".htm", ".texi"}
# Documentation by name: the part before the first dot, e.g. README.Debian, changelog.Debian.amd64, LICENSE-MIT.
DOC_NAME = re.compile(
    r"(changelog|changes|news|readme|copyright|copying|licen[cs]es?|notice|authors|contributors|credits|thanks"
    r"|todo|history|faq|bugs|install|maintainers|release[-_]?notes|hacking|contributing|upgrading|security"
    r"|third[-_]?party[-_]?notices)([-_.].*)?",
    re.IGNORECASE,
)
# Text files that are configuration or data, not documentation.
NOT_DOC_NAMES = {
    "top_level.txt",
    "entry_points.txt",
    "dependency_links.txt",
    "namespace_packages.txt",
    "sources.txt",
    "requires.txt",
    "vocab.txt",
    "merges.txt",
    "cmakelists.txt",
    "record",
    "wheel",
    "installer",
    "requested",
    "build",
}
# In /usr/share/doc, upper-case names without a suffix are documentation (PORTING, ABOUT-NLS, KEYSERVER); in
# site-packages they are also time-zone files (tzdata/zoneinfo/UTC), so the rule is not used there.
UPPER_NAME = re.compile(r"[A-Z][A-Z0-9_-]{2,}")
# Folders of test data and caches.
SKIP_DIRS = {"tests", "test", "testing", "testdata", "test_data", "fixtures", "__pycache__", "node_modules"}


@dataclass(frozen=True)
class Candidate:
    """A file to copy: where it is, where it goes in the corpus, and whether it must be gunzipped."""

    source: Path
    target: str
    gunzip: bool


class CorpusError(Exception):
    """A run that cannot or must not go ahead; the message is shown and the exit status is 2."""


# A file over the cap: its size after decompression, its corpus path, where it comes from.
Oversize = tuple[int, str, Candidate]


def is_doc_name(name: str, *, upper_case: bool = False) -> bool:
    """Whether a file name (without .gz) reads as documentation; ``upper_case`` admits any PORTING-like name."""
    lower = name.lower()
    if lower in NOT_DOC_NAMES or lower.endswith(".py"):
        return False
    return (
        PurePosixPath(lower).suffix in DOC_SUFFIXES
        or DOC_NAME.fullmatch(name) is not None
        or (upper_case and UPPER_NAME.fullmatch(name) is not None)
    )


def debian_docs(root: Path, skipped: Counter[str]) -> Iterator[Candidate]:
    """Documentation of the Debian packages, in sorted order; symlinked files and folders are not followed."""
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        kept = []
        for name in sorted(dirs):
            if (here / name).is_symlink():
                skipped["symlink"] += 1
            elif not name.startswith(".") and name not in SKIP_DIRS:
                kept.append(name)
        dirs[:] = kept
        for name in sorted(files):
            path = here / name
            if path.is_symlink():
                skipped["symlink"] += 1
                continue
            if name.startswith("."):
                continue
            gunzip = name.endswith(".gz")
            plain = name[:-3] if gunzip else name
            if not is_doc_name(plain, upper_case=True):
                skipped["not documentation"] += 1
                continue
            relpath = path.relative_to(root).parent / plain
            yield Candidate(path, f"usr-share-doc/{relpath.as_posix()}", gunzip)


def site_packages_dir() -> Path:
    """The project's site-packages: this interpreter's if it runs in a venv, else the repository's .venv."""
    if sys.prefix != sys.base_prefix:
        return Path(sysconfig.get_paths()["purelib"])
    found = sorted(REPO.glob(".venv/lib/python3*/site-packages"))
    if not found:
        raise CorpusError("no site-packages found: run with the project's venv or pass --site-packages")
    return found[-1]


def installed_locally(dist: Distribution) -> bool:
    """Installed from a local path (editable or not): the team's own code, not third-party text."""
    text = dist.read_text("direct_url.json")
    if not text:
        return False
    try:
        return str(json.loads(text).get("url", "")).startswith("file:")
    except (ValueError, AttributeError):
        return False


def package_docs(site: Path, skipped: Counter[str]) -> Iterator[Candidate]:
    """Documentation files each installed distribution lists in its RECORD, distributions sorted by name."""
    dists = []
    for dist in distributions(path=[str(site)]):
        name = dist.metadata["Name"]
        if name:
            dists.append((re.sub(r"[-_.]+", "-", name).lower(), dist))
    seen: set[Path] = set()
    for name, dist in sorted(dists, key=lambda item: item[0]):
        if installed_locally(dist):
            skipped["local distribution"] += 1
            continue
        for file in sorted(dist.files or [], key=str):
            parts = file.parts
            if not parts or parts[0] == ".." or any(p.startswith(".") or p in SKIP_DIRS for p in parts[:-1]):
                continue
            path = site / PurePosixPath(*parts)
            if path in seen or parts[-1].startswith("."):
                continue
            seen.add(path)
            in_dist_info = parts[0].endswith(".dist-info")
            metadata = in_dist_info and len(parts) == 2 and parts[1] == "METADATA"
            if not (metadata or is_doc_name(parts[-1]) or (in_dist_info and "licenses" in parts[1:-1])):
                continue
            if path.is_symlink():
                skipped["symlink"] += 1
                continue
            if not path.is_file():
                continue
            yield Candidate(path, f"site-packages/{name}/{file.as_posix()}", False)


def load(candidate: Candidate) -> bytes:
    """The file's bytes, gunzipped if needed; never re-encoded."""
    if candidate.gunzip:
        with gzip.open(candidate.source, "rb") as handle:
            return handle.read()
    return candidate.source.read_bytes()


def prepare(out: Path, sources: list[Path]) -> None:
    """Empty OUT_DIR, refusing to touch a folder this script did not make or to write inside a source."""
    for source in sources:
        if out.is_relative_to(source.resolve()):
            raise CorpusError(f"{out} is inside the source {source}; the corpus would gather itself")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise CorpusError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise CorpusError(f"{out} is not empty and has no {MARKER} marker; refusing to wipe it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("Written by bench/real_corpus.py; the whole folder is wiped on its next run.\n")


def suffix_of(target: str) -> str:
    """Suffix for the per-suffix count; files without one are counted as '(none)'."""
    return PurePosixPath(target).suffix or "(none)"


def spread(items: list[Oversize], count: int) -> list[Oversize]:
    """``count`` items evenly spaced from the first to the last, so kept oversize files range from 'just over'."""
    if count >= len(items):
        return items
    if count <= 1:
        return items[:count]
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def gather(
    out: Path, doc_root: Path, site: Path, *, cap: int, keep_oversize: int, sample: int | None = None
) -> dict[str, object]:
    """Copy every eligible file into ``out`` (or a sample of about ``sample`` bytes) and return the figures.

    The sample takes files in the order of a hash of their path, so it keeps the corpus's mix (megabyte
    changelogs, many small files) and is the same on every run; files that are not UTF-8 are always kept.
    """
    skipped: Counter[str] = Counter()
    written: dict[str, int] = {}
    taken: set[str] = set()
    found_oversize = 0
    not_utf8: list[str] = []
    oversize: dict[str, Oversize] = {}
    eligible: list[tuple[Candidate, int, bool]] = []

    def write(candidate: Candidate, data: bytes) -> None:
        dest = out / candidate.target
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        written[candidate.target] = len(data)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            not_utf8.append(candidate.target)

    sources = [debian_docs(doc_root, skipped)] if doc_root.is_dir() else []
    sources.append(package_docs(site, skipped))
    for source in sources:
        for candidate in source:
            if candidate.target in taken:
                skipped["duplicate target"] += 1
                continue
            taken.add(candidate.target)
            try:
                data = load(candidate)
            except (OSError, EOFError, zlib.error) as error:
                skipped[f"unreadable ({type(error).__name__})"] += 1
                continue
            if not data:
                skipped["empty"] += 1
            elif b"\x00" in data[:SNIFF_BYTES]:
                skipped["binary"] += 1
            elif len(data) > cap:
                found_oversize += 1
                # Identical copies (e.g. one copyright file per boost library) would test the same thing.
                oversize.setdefault(hashlib.sha256(data).hexdigest(), (len(data), candidate.target, candidate))
            else:
                eligible.append((candidate, len(data), _is_utf8(data)))

    chosen = eligible
    if sample is not None:
        ordered = sorted(eligible, key=lambda item: (item[2], hashlib.sha256(item[0].target.encode()).digest()))
        chosen, size = [], 0
        for item in ordered:  # the non-UTF-8 files first, then by path hash until the sample is full
            if size >= sample and item[2]:
                break
            chosen.append(item)
            size += item[1]
        skipped["left out of the sample"] += len(eligible) - len(chosen)
    for candidate, _, _ in sorted(chosen, key=lambda item: item[0].target):
        write(candidate, load(candidate))

    within_cap = sum(written.values())
    largest_within_cap = max(written, key=lambda target: (written[target], target)) if written else ""
    distinct = sorted(oversize.values(), key=lambda item: (item[0], item[1]))
    kept = spread(distinct, keep_oversize)
    for _, _, candidate in kept:
        write(candidate, load(candidate))
    skipped["over the cap"] += found_oversize - len(kept)

    total = sum(written.values())
    largest = max(written, key=lambda target: (written[target], target)) if written else ""
    by_root = Counter(target.split("/", 1)[0] for target in written)
    bytes_by_root: Counter[str] = Counter()
    for target, size in written.items():
        bytes_by_root[target.split("/", 1)[0]] += size
    utf8_within_cap = within_cap - sum(written[t] for t in not_utf8 if written[t] <= cap)
    return {
        "out_dir": str(out),
        "files": len(written),
        "total_mb": round(total / MB, 2),
        "within_cap_mb": round(within_cap / MB, 2),
        "utf8_within_cap_mb": round(utf8_within_cap / MB, 2),
        "cap_mb": cap / MB,
        "largest": {"path": largest, "mb": round(written.get(largest, 0) / MB, 2)},
        "largest_within_cap": {"path": largest_within_cap, "mb": round(written.get(largest_within_cap, 0) / MB, 2)},
        "by_source": {root: {"files": by_root[root], "mb": round(bytes_by_root[root] / MB, 2)} for root in by_root},
        "by_suffix": dict(sorted(Counter(suffix_of(t) for t in written).items(), key=lambda kv: (-kv[1], kv[0]))),
        "not_utf8": len(not_utf8),
        "not_utf8_examples": sorted(not_utf8)[:10],
        "oversize_found": found_oversize,
        "oversize_kept": [{"path": target, "mb": round(size / MB, 2)} for size, target, _ in kept],
        "skipped": dict(sorted(skipped.items())),
    }


def report(stats: dict[str, object]) -> None:
    """Human-readable figures."""
    largest = stats["largest"]
    print(f"corpus     {stats['out_dir']}")
    print(f"files      {stats['files']:,}")
    print(f"total      {stats['total_mb']} MB ({stats['within_cap_mb']} MB within the {stats['cap_mb']} MB cap)")
    within = stats["largest_within_cap"]
    print(f"largest    {largest['path']} ({largest['mb']} MB); within the cap: {within['path']} ({within['mb']} MB)")
    for root, figures in stats["by_source"].items():
        print(f"source     {root}: {figures['files']:,} files, {figures['mb']} MB")
    suffixes = list(stats["by_suffix"].items())
    rest = sum(count for _, count in suffixes[12:])
    shown = ", ".join(f"{suffix} {count}" for suffix, count in suffixes[:12])
    print(f"by suffix  {shown}" + (f", {len(suffixes) - 12} others {rest}" if rest else ""))
    print(f"not UTF-8  {stats['not_utf8']} files, e.g. " + ", ".join(stats["not_utf8_examples"][:5]))
    kept = ", ".join(f"{item['path']} ({item['mb']} MB)" for item in stats["oversize_kept"])
    print(f"oversize   {stats['oversize_found']} found, kept: {kept or 'none'}")
    print("skipped    " + ", ".join(f"{reason} {count}" for reason, count in stats["skipped"].items()))
    print(f"seconds    {stats['seconds']}")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, build the corpus, print its figures; exit 2 if it is smaller than asked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to (re)fill; wiped first if it holds the marker")
    parser.add_argument("--min-mb", type=float, default=25, help="fail (exit 2) below this many MB within the cap")
    parser.add_argument("--max-file-mb", type=float, default=2, help="per-file cap after decompression")
    parser.add_argument("--keep-oversize", type=int, default=3, help="keep this many files over the cap")
    parser.add_argument("--doc-root", type=Path, default=DOC_ROOT)
    parser.add_argument("--site-packages", type=Path, default=None, help="default: the project's venv")
    parser.add_argument("--json", action="store_true", help="print only the JSON line of figures")
    parser.add_argument("--sample-mb", type=float, help="keep a deterministic sample of about this many MB")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    out = args.out_dir.resolve()
    try:
        site = args.site_packages or site_packages_dir()
        prepare(out, [args.doc_root, site])
    except CorpusError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stats = gather(
        out,
        args.doc_root,
        site,
        cap=int(args.max_file_mb * MB),
        keep_oversize=max(0, args.keep_oversize),
        sample=int(args.sample_mb * MB) if args.sample_mb else None,
    )
    stats["seconds"] = round(time.perf_counter() - started, 2)
    if not args.json:
        report(stats)
    print(json.dumps(stats))
    if stats["within_cap_mb"] < args.min_mb:
        print(
            f"error: only {stats['within_cap_mb']} MB within the {stats['cap_mb']} MB cap, below --min-mb "
            f"{args.min_mb}: this machine lacks the documentation (is /usr/share/doc stripped?)",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
