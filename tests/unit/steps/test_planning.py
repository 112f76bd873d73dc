"""The rules that protect stored data, and batches cut by bytes, on plain values (no Weaviate, no files)."""

from __future__ import annotations

from genai_pipeline.steps.documents import Document
from genai_pipeline.steps.planning import cut_batches, decide_removals

STORED = {f"a/{n}.md" for n in range(10)} | {"b/one.md", "b/two.md", "old/x.md", "old/y.md"}


def decide(**overrides):
    options = {
        "sources": {"a", "b"},
        "unavailable": set(),
        "present": STORED - {"old/x.md", "old/y.md"},
        "rejected": set(),
        "delete_rejected": False,
        "max_share": 0.5,
        "allow_mass_prune": False,
        "prune_removed_sources": False,
    } | overrides
    return decide_removals(STORED, **options)


def test_only_documents_a_clean_source_no_longer_lists_are_removed() -> None:
    decision = decide(present=STORED - {"a/3.md", "old/x.md", "old/y.md"})
    assert decision.removed == ["a/3.md"]
    assert decision.unconfigured == {"old": 2}  # a source dropped from the settings is kept unless asked


def test_a_source_that_gave_nothing_loses_nothing() -> None:
    decision = decide(unavailable={"b"}, present={f"a/{n}.md" for n in range(10)})
    assert decision.removed == [] and decision.refused == []


def test_a_dropped_source_is_pruned_only_when_asked() -> None:
    decision = decide(prune_removed_sources=True)
    assert decision.removed == ["old/x.md", "old/y.md"] and decision.unconfigured == {}


def test_a_refused_file_keeps_its_previous_version_unless_the_setting_deletes_it() -> None:
    present = STORED - {"a/1.md", "old/x.md", "old/y.md"}
    kept = decide(present=present, rejected={"a/1.md"})
    assert kept.removed == [] and kept.stale == ["a/1.md"]
    deleted = decide(present=present, rejected={"a/1.md"}, delete_rejected=True)
    assert deleted.removed == ["a/1.md"] and deleted.stale == []


def test_the_guard_refuses_to_prune_most_of_a_source_unless_allowed() -> None:
    half_listed = {f"a/{n}.md" for n in range(4)} | {"b/one.md", "b/two.md"}
    refused = decide(present=half_listed)
    assert refused.removed == []
    assert refused.refused == [{"source": "a", "would_remove": 6, "stored": 10, "share": 0.6}]
    allowed = decide(present=half_listed, allow_mass_prune=True)
    assert allowed.removed == sorted(f"a/{n}.md" for n in range(4, 10)) and allowed.refused == []


def test_the_guard_holds_back_only_the_source_over_its_share() -> None:
    present = {f"a/{n}.md" for n in range(1, 10)}  # a loses 1 of 10; b loses both of its 2
    decision = decide(present=present)
    assert decision.removed == ["a/0.md"]
    assert [r["source"] for r in decision.refused] == ["b"]


def docs(*sizes: int) -> list[tuple[Document, str]]:
    return [(Document("kb", f"{n:03d}.md", size, f"h{n}"), f"fp{n}") for n, size in enumerate(sizes)]


def test_batches_are_cut_by_bytes_not_by_document_count() -> None:
    batches = cut_batches(docs(*[100] * 30, 900, 900), max_bytes=1000, max_docs=200)
    assert [sum(e.share for e in b) for b in batches] == [1000, 1000, 1000, 900, 900]


def test_a_huge_document_is_split_over_batches_of_its_own() -> None:
    batches = cut_batches(docs(50, 3500, 50), max_bytes=1000, max_docs=200)
    parts = [(e.relpath, e.part, e.parts) for b in batches for e in b]
    assert parts == [
        ("000.md", 0, 1),
        ("001.md", 0, 4),
        ("001.md", 1, 4),
        ("001.md", 2, 4),
        ("001.md", 3, 4),
        ("002.md", 0, 1),
    ]
    assert max(sum(e.share for e in b) for b in batches) <= 1000 + 50


def test_max_docs_still_caps_a_batch_of_small_files() -> None:
    assert [len(b) for b in cut_batches(docs(*[1] * 7), max_bytes=10**6, max_docs=3)] == [3, 3, 1]
