from __future__ import annotations

import os
from pathlib import Path

import pytest

from genai_pipeline.steps.documents import DocumentRejected, outside_roots, read_document, scan_source

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


def test_a_symlink_loop_and_a_deep_folder_are_reported_and_the_rest_is_scanned(tmp_path: Path) -> None:
    """Each failed the whole plan on Python 3.11: a loop (Path.resolve's RuntimeError), 1,200 levels (os.walk's)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.md").write_text("# Good\n\nFine text.\n")
    os.symlink(corpus / "loop-b", corpus / "loop-a")
    os.symlink(corpus / "loop-a", corpus / "loop-b")
    (corpus / "deep").mkdir()
    fd = os.open(corpus / "deep", os.O_RDONLY)  # one level at a time: pathlib's mkdir(parents=True) recurses too
    try:
        for _ in range(1_200):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        with open(os.open("bottom.md", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as handle:
            handle.write("# Bottom\n\nFound all the same.\n")
    finally:
        os.close(fd)

    try:
        scan = scan_source("kb", str(corpus), max_bytes=CAP)
    finally:  # by full path, innermost first: Python 3.11's rmtree (pytest's clean-up) recurses as well
        (corpus / "deep" / Path(*["d"] * 1_200) / "bottom.md").unlink()
        for level in range(1_200, 0, -1):
            (corpus / "deep" / Path(*["d"] * level)).rmdir()

    assert [d.uri for d in scan.documents] == ["kb/good.md", f"kb/deep/{'d/' * 1_200}bottom.md"]
    reasons = {r.uri: r.reason for r in scan.rejected}
    assert reasons == {"kb/loop-a": "symlink loop (" + str(corpus / "loop-b") + ")", "kb/loop-b": reasons["kb/loop-b"]}
    assert reasons["kb/loop-b"].startswith("symlink loop")


def test_a_hard_link_is_listed_and_refused_when_asked(tmp_path: Path) -> None:
    """A hard link shows nothing of its other name, which may lie outside the corpus."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.md").write_text("# Good\n\nFine text.\n")
    outside = tmp_path / "secret.md"
    outside.write_text("# Secret\n\nOutside the corpus.\n")
    os.link(outside, corpus / "linked.md")

    listed = scan_source("kb", str(corpus), max_bytes=CAP)
    assert listed.hard_links == ["kb/linked.md"] and {d.uri for d in listed.documents} == {"kb/good.md", "kb/linked.md"}

    refused = scan_source("kb", str(corpus), max_bytes=CAP, refuse_hard_links=True)
    assert [d.uri for d in refused.documents] == ["kb/good.md"]
    assert [(r.uri, r.reason.split(" (")[0]) for r in refused.rejected] == [("kb/linked.md", "hard link")]


def test_outside_roots_resolves_before_it_compares(tmp_path: Path) -> None:
    allowed = tmp_path / "corpora"
    (allowed / "team").mkdir(parents=True)
    (tmp_path / "corpora-secret").mkdir()
    (allowed / "door").symlink_to(tmp_path / "corpora-secret")
    sources = {
        "team": str(allowed / "team"),
        "root": str(allowed),
        "dotdot": f"{allowed}/team/../../corpora-secret",
        "prefix": str(tmp_path / "corpora-secret"),  # shares the allowed root's characters, not its folder
        "link": str(allowed / "door"),  # a symlink out of the allowed folder
        "bucket": "s3://kb/team/../../other/docs",
        "in-bucket": "s3://kb/team/docs",
    }
    refused = outside_roots(sources, [str(allowed), "s3://kb/team"])
    assert sorted(refused) == ["bucket", "dotdot", "link", "prefix"]
    assert "not under an allowed root" in refused["link"] and str(allowed) in refused["link"]
    assert outside_roots({"pipeline-docs": "package://genai_pipeline/sample_kb"}, ["package://genai_pipeline"]) == {}
