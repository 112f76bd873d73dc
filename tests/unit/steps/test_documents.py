from __future__ import annotations

import os
from pathlib import Path

import pytest

from genai_pipeline.steps.documents import DocumentRejected, read_document, scan_source

CAP = 10_000


def test_scan_reports_each_bad_file_and_keeps_the_good_ones(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "nested" / "deeper").mkdir(parents=True)
    (corpus / "good.md").write_text("# Good\n\nFine text.\n")
    (corpus / "nested" / "deeper" / "also-good.txt").write_text("nested text")
    (corpus / "empty.md").write_bytes(b"")
    (corpus / "blank.md").write_text("   \n\n")
    (corpus / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (corpus / "latin1.txt").write_bytes("résumé".encode("latin-1"))
    (corpus / "huge.txt").write_bytes(b"word " * 3_000)
    (corpus / ".hidden.md").write_text("# skipped, and listed as skipped")
    (corpus / ".git").mkdir()
    (corpus / ".git" / "config").write_text("[core]")
    outside = tmp_path / "secret.txt"
    outside.write_text("outside the corpus")
    os.symlink(outside, corpus / "escape.md")
    os.symlink(corpus / "good.md", corpus / "alias.md")
    os.symlink(tmp_path / "missing", corpus / "broken.md")

    scan = scan_source("kb", str(corpus), max_bytes=CAP)

    found = {d.uri: d.encoding for d in scan.documents}
    # Latin-1 is decoded, not refused; its encoding is recorded with the document.
    assert found == {"kb/good.md": "utf-8", "kb/latin1.txt": "iso8859-1", "kb/nested/deeper/also-good.txt": "utf-8"}
    reasons = {r.uri: r.reason for r in scan.rejected}
    assert reasons["kb/empty.md"] == "empty file"
    assert reasons["kb/blank.md"] == "only whitespace"
    assert reasons["kb/image.png"].startswith("binary content")
    assert "over the 10,000-byte cap" in reasons["kb/huge.txt"]
    assert reasons["kb/escape.md"].startswith("symlink points outside the corpus")
    assert reasons["kb/broken.md"].startswith("broken symlink")
    assert scan.aliases == ["kb/alias.md"]
    assert sorted(scan.hidden) == ["kb/.git/", "kb/.hidden.md"]
    assert len(scan.rejected) == 6


def test_content_hash_follows_the_bytes(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("one")
    first = scan_source("kb", str(tmp_path), max_bytes=CAP).documents[0].content_hash
    (tmp_path / "a.md").write_text("two")
    assert scan_source("kb", str(tmp_path), max_bytes=CAP).documents[0].content_hash != first


def test_missing_source_folder_is_reported(tmp_path: Path) -> None:
    scan = scan_source("kb", str(tmp_path / "nope"), max_bytes=CAP)
    assert scan.documents == []
    assert "does not exist" in scan.rejected[0].reason


def test_the_packaged_sample_source_resolves_wherever_the_package_is_installed() -> None:
    from genai_pipeline.config import SAMPLE_KNOWLEDGE_BASE

    scan = scan_source("pipeline-docs", SAMPLE_KNOWLEDGE_BASE, max_bytes=2_000_000)
    assert len(scan.documents) == 8 and not scan.rejected
    assert "pipeline-docs/operations/security.md" in {d.uri for d in scan.documents}


def test_a_planned_document_names_no_host_path_and_reads_under_any_mount_of_its_source(tmp_path: Path) -> None:
    """Batch files travel to pods where the source is mounted elsewhere: only source + relpath identify it."""
    planned = tmp_path / "laptop"
    (planned / "guides").mkdir(parents=True)
    (planned / "guides" / "a.md").write_text("# A\n\nText.\n")
    document = scan_source("kb", str(planned), max_bytes=CAP).documents[0]
    assert str(tmp_path) not in repr(document.to_dict())

    mounted = tmp_path / "pod-mount"
    planned.rename(mounted)
    assert read_document(document, str(mounted), max_bytes=CAP).startswith("# A")


def test_a_document_changed_after_planning_is_refused_not_chunked_under_the_old_fingerprint(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("planned text")
    document = scan_source("kb", str(tmp_path), max_bytes=CAP).documents[0]
    (tmp_path / "a.md").write_text("edited meanwhile")
    with pytest.raises(DocumentRejected, match="changed since it was planned"):
        read_document(document, str(tmp_path), max_bytes=CAP)


def test_only_markdown_family_files_take_their_title_from_a_heading() -> None:
    """A real NEWS file's indented shell comment is not its title; its package and name are."""
    from genai_pipeline.steps.documents import document_title

    news = "apt (2.6.0)\n\n  Example:\n  # echo 'Binary::apt::APT::Keep-Downloaded-Packages \"true\";' \\\n"
    assert document_title(news, "apt/NEWS.Debian") == "apt NEWS"
    assert document_title("# not a title\n", "notes.txt") == "notes"
    assert document_title("intro\n\n# Ingestion\n", "kb/ingestion.md") == "Ingestion"
    assert document_title("   # Indented heading\n", "kb/a.md") == "Indented heading"
    assert document_title("    # code, not a heading\n", "kb/b.md") == "kb b"
    assert document_title("# From RST\n", "docs/guide.rst") == "From RST"  # RST is converted to Markdown first
