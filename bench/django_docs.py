"""Install the real documentation corpus the generation benchmark runs on: Django's own docs, from PyPI.

    uv run python bench/django_docs.py DIR        # idempotent; prints the corpus's figures

Why Django: a documentation set nobody here wrote, large (279 files, 4.9 MB of reStructuredText), skewed (from
an 84-byte stub to the 162 KB QuerySet reference), and questions about it have answers a reader can check. The
release notes (398 files) and the docs build's requirements file are left out: the notes restate features in
passing and would turn the evaluation into a test of which version a sentence came from.

Reproducible: the sdist of one pinned version is found on the package index (``PIP_INDEX_URL`` or PyPI's simple
API), its SHA-256 is checked against the pin, and ``docs/**/*.txt`` is copied to DIR keeping the layout, so a
source URI reads ``django-docs/topics/auth/customizing.txt``. DIR holds a marker with the pin; a second run
with the same pin does nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path, PurePosixPath

VERSION = "6.1.3"
SDIST = f"django-{VERSION}.tar.gz"
SHA256 = "b5d2d9e35295065d13b1927b3f19a59bd119f737aa6299def14ccca1ae3c8c0d"
MARKER = ".django-docs"
LEFT_OUT = ("releases/", "_theme/", "_ext/", "man/", "requirements.txt")


def sdist_url(index: str) -> str:
    """The sdist's URL as the simple index lists it (PEP 503 HTML)."""
    with urllib.request.urlopen(f"{index.rstrip('/')}/django/", timeout=60) as page:
        html = page.read().decode()
    match = re.search(rf'href="([^"#]*{re.escape(SDIST)})(#[^"]*)?"', html)
    if not match:
        raise SystemExit(f"{SDIST} is not on the index {index}")
    return urllib.request.urljoin(f"{index.rstrip('/')}/django/", match.group(1))


def install(target: Path) -> dict[str, object]:
    """Download, check and unpack the docs into ``target`` unless the same pin is there already."""
    marker = target / MARKER
    installed = json.loads(marker.read_text()) if marker.exists() else {}
    if installed.get("sha256") == SHA256:
        return installed
    if target.exists() and any(target.iterdir()) and not marker.exists():
        raise SystemExit(f"{target} is not empty and is not a corpus this script wrote: refusing to replace it")
    url = sdist_url(os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple"))
    with urllib.request.urlopen(url, timeout=300) as response:
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{url}: SHA-256 {digest} is not the pinned {SHA256}")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    files, size = 0, 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            path = PurePosixPath(member.name)
            inside = PurePosixPath(*path.parts[2:]) if path.parts[1:2] == ("docs",) else None
            if not member.isfile() or inside is None or path.suffix != ".txt":
                continue
            if str(inside).startswith(LEFT_OUT) or ".." in inside.parts:
                continue
            out = target / inside
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(archive.extractfile(member).read())
            files, size = files + 1, size + member.size
    figures = {"version": VERSION, "sha256": SHA256, "url": url, "files": files, "bytes": size}
    marker.write_text(json.dumps(figures))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path)
    figures = install(parser.parse_args().target)
    print(f"Django {figures['version']} docs: {figures['files']} files, {figures['bytes'] / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
