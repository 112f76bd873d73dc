"""Finding the documents of a knowledge-base source and refusing the ones that cannot be text.

Every refusal names the document and the reason, so one bad file never stops a batch and never
disappears silently. Text in a legacy encoding is decoded (:mod:`text_formats`), not refused.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import fsspec

from genai_pipeline.steps.text_formats import DocumentRejected, decode_text, structured_by_headings, too_large
from genai_pipeline.store import is_local

# A Markdown H1: "# " after at most three spaces (four make it code).
_H1 = re.compile(r"^ {0,3}# ")

PACKAGE_SCHEME = "package://"


@dataclass(frozen=True)
class Document:
    """One candidate document: which source, which path inside it, and what its bytes hash to.

    It carries no absolute location: a batch file is read in other processes and pods, where the same
    source root may be mounted elsewhere; :func:`read_document` resolves it against the root it is given.
    """

    source: str
    relpath: str
    size: int
    content_hash: str
    # The text encoding its bytes were decoded with (legacy ones are detected, and recorded on every chunk).
    encoding: str = "utf-8"

    @property
    def uri(self) -> str:
        """Stable identity across machines: ``<source>/<relative path>``."""
        return f"{self.source}/{self.relpath}"

    def to_dict(self) -> dict[str, object]:
        """JSON form for batch files."""
        return asdict(self)


@dataclass(frozen=True)
class Rejection:
    """A document left out, and why."""

    uri: str
    reason: str


@dataclass
class SourceScan:
    """What one pass over a source found."""

    documents: list[Document]
    rejected: list[Rejection]
    # Symlinks inside the corpus: their target is ingested under its own path, so they are not repeated.
    aliases: list[str]
    # Hidden files and folders (a name starting with "."), left out on purpose and listed in the report.
    hidden: list[str] = field(default_factory=list)
    # Files with more than one hard link: another name, perhaps outside the corpus, shares their bytes.
    hard_links: list[str] = field(default_factory=list)


def document_location(root: str, relpath: str) -> str:
    """Path or URL of a document under its source root, as seen from this process."""
    return f"{resolve_root(root).rstrip('/')}/{relpath}"


def read_document(document: Document, root: str, *, max_bytes: int) -> str:
    """Read and decode a document found by :func:`scan_source` under ``root``.

    Refused when its bytes no longer hash to what the scan saw: chunks must match the planned fingerprint.
    """
    with fsspec.open(document_location(root, document.relpath), "rb") as handle:
        data = handle.read(max_bytes + 1)
    if hashlib.sha256(data).hexdigest() != document.content_hash:
        raise DocumentRejected("changed since it was planned (content hash differs); the next run ingests it")
    return decode_text(data, max_bytes=max_bytes).text


def document_title(text: str, relpath: str) -> str:
    """A Markdown-family file's first H1 (HTML and RST converted); else its folder and file name.

    Only Markdown has headings: a plain-text file's line that starts with "# " (a shell comment in a NEWS file)
    is not a title. Its folder is usually the package the file documents ("apt NEWS").
    """
    path = PurePosixPath(relpath)
    if structured_by_headings(path.suffix):
        for line in text.splitlines():
            if _H1.match(line):
                return line.strip()[2:].strip()
    name = path.stem.replace("-", " ").replace("_", " ")
    return f"{path.parent.name} {name}" if path.parent.name else name


def resolve_root(root: str) -> str:
    """``package://<package>/<folder>`` means a folder shipped inside an installed package."""
    if not root.startswith(PACKAGE_SCHEME):
        return root
    package, _, folder = root.removeprefix(PACKAGE_SCHEME).partition("/")
    return str(importlib.resources.files(package).joinpath(folder))


def _place(root: str) -> tuple[str, str]:
    """A root as (protocol, normalised absolute path): local ones with symlinks and ``..`` resolved."""
    url = resolve_root(root)
    protocol, path = fsspec.core.split_protocol(url)
    if is_local(url):
        return "file", str(Path(path).expanduser().resolve())
    return protocol, posixpath.normpath("/" + path)


def outside_roots(sources: Mapping[str, str], allowed: Iterable[str]) -> dict[str, str]:
    """The sources (name -> why) that lie under none of the ``allowed`` roots.

    A run's own sources come from whoever may trigger a run; only the operator's allow-list says which
    folders the workers may read for them.
    """
    places = [_place(root) for root in allowed]
    refused = {}
    for name, root in sources.items():
        protocol, path = _place(root)
        if not any(protocol == p and (path == a or path.startswith(a.rstrip("/") + "/")) for p, a in places):
            refused[name] = (
                f"refused: {root} is not under an allowed root (PIPELINE_INGEST__ALLOWED_ROOTS: "
                f"{', '.join(allowed) or 'none'})"
            )
    return refused


def scan_source(name: str, root: str, *, max_bytes: int, refuse_hard_links: bool = False) -> SourceScan:
    """List every file under a source root (nested folders included) and hash the usable ones.

    A local file with more than one hard link is listed in ``hard_links`` (and refused with
    ``refuse_hard_links``): unlike a symlink, nothing shows whether its other name lies outside the corpus.
    """
    url = resolve_root(root)
    fs, base = fsspec.core.url_to_fs(url)
    if is_local(url):
        return _scan_local(name, Path(base), max_bytes=max_bytes, refuse_hard_links=refuse_hard_links)
    scan = SourceScan([], [], [])
    for path, info in sorted(fs.find(base, detail=True).items()):
        relpath = path[len(base.rstrip("/")) + 1 :]
        if _hidden(relpath):
            scan.hidden.append(f"{name}/{relpath}")
            continue
        _admit(scan, name, relpath, fs.unstrip_protocol(path), int(info.get("size") or 0), max_bytes, fs.cat_file)
    return scan


def _scan_local(name: str, root: Path, *, max_bytes: int, refuse_hard_links: bool) -> SourceScan:
    scan = SourceScan([], [], [])
    real_root = root.resolve()
    if not real_root.is_dir():
        scan.rejected.append(Rejection(f"{name}/", f"source folder {root} does not exist"))
        return scan
    for directory, dirnames, filenames in _walk(root, name, scan):
        scan.hidden.extend(
            f"{name}/{(directory / d).relative_to(root).as_posix()}/" for d in dirnames if d.startswith(".")
        )
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for entry in filenames:
            path = directory / entry
            relpath = path.relative_to(root).as_posix()
            if _hidden(relpath):
                scan.hidden.append(f"{name}/{relpath}")
                continue
            if path.is_symlink():
                _symlink(scan, f"{name}/{relpath}", path, real_root)
                continue
            if not path.is_file():
                scan.rejected.append(Rejection(f"{name}/{relpath}", "not a regular file"))
                continue
            status = path.stat()
            if status.st_nlink > 1:
                if refuse_hard_links:
                    reason = f"hard link ({status.st_nlink} names share its bytes; refuse_hard_links is set)"
                    scan.rejected.append(Rejection(f"{name}/{relpath}", reason))
                    continue
                scan.hard_links.append(f"{name}/{relpath}")
            _admit(scan, name, relpath, str(path), status.st_size, max_bytes, _read_local)
    return scan


def _walk(root: Path, name: str, scan: SourceScan) -> Iterator[tuple[Path, list[str], list[str]]]:
    """Top-down and sorted like ``os.walk``, but without recursion and with every unreadable folder reported.

    Python 3.11's ``os.walk`` recurses (a folder about 1,000 levels deep raised RecursionError and failed the
    whole plan) and skips folders it cannot list in silence. Symlinks, to folders too, come as files: the
    caller decides about them. The caller may prune the folder list, as with ``os.walk``.
    """
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
            folders, files = [], []
            for entry in entries:
                (folders if entry.is_dir(follow_symlinks=False) else files).append(entry.name)
        except OSError as error:
            where = directory.relative_to(root).as_posix()
            scan.rejected.append(Rejection(f"{name}/{where}/", f"unreadable folder: {error.strerror or error}"))
            continue
        yield directory, folders, files
        stack.extend(directory / folder for folder in reversed(folders))


def _symlink(scan: SourceScan, uri: str, path: Path, real_root: Path) -> None:
    """A symlink is never read itself: an alias of a document inside the corpus, or refused, saying why."""
    try:
        target = path.resolve()
    except (OSError, RuntimeError):  # Python 3.11 raises RuntimeError on a loop, later ones OSError
        scan.rejected.append(Rejection(uri, f"symlink loop ({os.readlink(path)})"))
        return
    if not target.exists():
        scan.rejected.append(Rejection(uri, f"broken symlink to {os.readlink(path)}"))
    elif not target.is_relative_to(real_root):
        scan.rejected.append(Rejection(uri, f"symlink points outside the corpus (to {target})"))
    else:
        scan.aliases.append(uri)


def _read_local(path: str) -> bytes:
    return Path(path).read_bytes()


def _hidden(relpath: str) -> bool:
    return any(part.startswith(".") for part in relpath.split("/"))


def _admit(scan: SourceScan, name: str, relpath: str, location: str, size: int, max_bytes: int, read) -> None:
    uri = f"{name}/{relpath}"
    if size > max_bytes:
        # Refused by size before reading, so a 10 GB file costs nothing.
        scan.rejected.append(Rejection(uri, too_large(size, max_bytes)))
        return
    try:
        data = read(location)
        decoded = decode_text(data, max_bytes=max_bytes)
    except DocumentRejected as error:
        scan.rejected.append(Rejection(uri, str(error)))
        return
    except OSError as error:
        scan.rejected.append(Rejection(uri, f"unreadable: {error.strerror or error}"))
        return
    scan.documents.append(Document(name, relpath, len(data), hashlib.sha256(data).hexdigest(), decoded.encoding))
