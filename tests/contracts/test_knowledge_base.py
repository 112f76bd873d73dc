"""The knowledge base's contract, held by Weaviate and by the in-memory one the step tests use.

Each test runs on both: what passes here on the fake is what the real collection does, so step tests on the
fake say something about production.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fakes import InMemoryKnowledgeBase
from genai_pipeline.steps import load
from genai_pipeline.steps.context import KnowledgeBase

MODEL = "local:all-MiniLM-L6-v2"


@pytest.fixture(params=["memory", pytest.param("weaviate", marks=pytest.mark.integration)])
def kb(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KnowledgeBase]:
    """An empty knowledge base, not created yet."""
    if request.param == "memory":
        yield InMemoryKnowledgeBase()
        return
    from genai_pipeline.clients.knowledge_base import open_knowledge_base

    settings, _ = request.getfixturevalue("settings_for")({"kb": tmp_path})
    with open_knowledge_base(settings.weaviate) as real:
        yield real


@pytest.fixture
def created(kb: KnowledgeBase) -> KnowledgeBase:
    kb.ensure(MODEL)
    return kb


def rows(uri: str, count: int, fp: str, text: str = "chunk") -> list[dict[str, object]]:
    return [
        {
            "source_uri": uri,
            "title": "T",
            "section": f"S{i}",
            "text": f"{fp} {text} {i}",
            "chunk_index": i,
            "chunks_per_doc": count,
            "content_hash": f"{fp}-{i}",
            "fingerprint": fp,
            "encoding": "utf-8",
        }
        for i in range(count)
    ]


def vectors(count: int, seed: int = 0, size: int = 8) -> np.ndarray:
    data = np.random.default_rng(seed).normal(size=(count, size)).astype(np.float32)
    return data / np.linalg.norm(data, axis=1, keepdims=True)


def test_ensure_creates_once_and_records_the_embedding_model(kb: KnowledgeBase) -> None:
    assert not kb.exists()
    assert kb.ensure(MODEL) is True
    assert kb.ensure(MODEL) is False
    assert kb.exists() and kb.embedding_model() == MODEL and kb.count() == 0
    assert kb.stored_documents() == {}


def test_rewriting_the_same_chunks_never_duplicates(created: KnowledgeBase) -> None:
    for _ in range(2):
        assert created.upsert(rows("kb/a.md", 30, "v1"), vectors(30)) == 30
    assert created.count() == 30


def test_stale_chunks_are_deleted_past_the_query_limit(created: KnowledgeBase) -> None:
    # 250 old chunks with the test server's QUERY_MAXIMUM_RESULTS at 100: one delete call cannot do it.
    created.upsert(rows("kb/a.md", 250, "old"), vectors(250))
    created.upsert(rows("kb/b.md", 5, "keep"), vectors(5))
    created.upsert(rows("kb/a.md", 3, "new"), vectors(3))
    assert created.delete_stale("kb/a.md", "new") == 250
    stored = created.stored_documents()
    assert {uri: set(doc.fingerprints) for uri, doc in stored.items()} == {"kb/a.md": {"new"}, "kb/b.md": {"keep"}}
    assert stored["kb/a.md"].complete("new") and stored["kb/b.md"].complete("keep")
    assert created.delete_documents(["kb/b.md", "kb/never-there.md"]) == 5
    assert created.count() == 3


def test_mismatched_vectors_are_refused_before_writing(created: KnowledgeBase) -> None:
    with pytest.raises(ValueError, match="3 chunks but 2 vectors"):
        created.upsert(rows("kb/a.md", 3, "v"), vectors(2))
    assert created.count() == 0


def test_a_refused_object_fails_the_write_loudly_and_the_rest_is_written(created: KnowledgeBase) -> None:
    bad = rows("kb/a.md", 2, "v")
    bad[1]["chunks_per_doc"] = "two"  # the schema says INT
    with pytest.raises(load.PartialWriteError, match=r"1 of 2 chunks were not written \(kb/a.md#1: "):
        created.upsert(bad, vectors(2))
    assert created.count() == 1


def test_a_vector_of_another_size_is_refused(created: KnowledgeBase) -> None:
    created.upsert(rows("kb/a.md", 2, "v"), vectors(2))
    with pytest.raises(load.PartialWriteError, match="1 of 1 chunks were not written"):
        created.upsert(rows("kb/b.md", 1, "v"), vectors(1, size=4))
    assert created.count() == 2


def test_a_document_loaded_part_way_is_not_complete_and_a_reload_repairs_it(created: KnowledgeBase) -> None:
    whole = rows("kb/a.md", 5, "v1")
    created.upsert(whole[:3], vectors(3))  # a load that failed after 3
    assert not created.stored_documents()["kb/a.md"].complete("v1")  # so the next plan ingests it again
    created.upsert(whole, vectors(5))
    assert created.stored_documents()["kb/a.md"].complete("v1") and created.count() == 5


def test_nearest_is_ordered_by_cosine_distance_and_limited(created: KnowledgeBase) -> None:
    stored = vectors(12)
    created.upsert(rows("kb/a.md", 12, "v"), stored)
    found = created.nearest(stored[7].tolist(), text="", limit=5, alpha=None)
    assert len(found) == 5
    assert (found[0].uri, found[0].chunk_index, found[0].section, found[0].title) == ("kb/a.md", 7, "S7", "T")
    assert found[0].text == "v chunk 7" and found[0].distance == pytest.approx(0.0, abs=1e-5)
    distances = [s.distance for s in found]
    assert distances == sorted(distances)
    expected = sorted(float(1 - stored[i] @ stored[7]) for i in range(12))[:5]
    assert distances == pytest.approx(expected, abs=1e-4)


def test_hybrid_ranks_the_keyword_match_first_without_a_distance(created: KnowledgeBase) -> None:
    created.upsert(rows("kb/a.md", 6, "v"), vectors(6))
    created.upsert(rows("kb/b.md", 1, "v", text="zanzibar"), vectors(1, seed=9))
    far = vectors(1, seed=3)[0].tolist()
    found = created.nearest(far, text="zanzibar", limit=3, alpha=0.0)
    assert 1 <= len(found) <= 3 and found[0].uri == "kb/b.md"
    assert {s.distance for s in found} == {0.0}


def test_a_chunk_is_read_by_its_document_and_index(created: KnowledgeBase) -> None:
    created.upsert(rows("kb/a.md", 3, "v"), vectors(3))
    assert created.chunk("kb/a.md", 2) == {
        "source_uri": "kb/a.md",
        "chunk_index": 2,
        "section": "S2",
        "title": "T",
        "text": "v chunk 2",
    }
    assert created.chunk("kb/a.md", 3) is None and created.chunk("kb/z.md", 0) is None


def test_object_ids_are_weaviates_uuid5_of_the_chunk_identity() -> None:
    """Collections loaded before the knowledge base existed keep their IDs: a re-run overwrites them."""
    from weaviate.util import generate_uuid5

    assert load.chunk_uuid("kb/a.md", 3, "abc") == generate_uuid5("kb/a.md\x1f3\x1fabc")
