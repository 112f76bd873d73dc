"""Weaviate writes against a real server: deterministic IDs, insert-then-delete, paging past limits."""

from __future__ import annotations

import numpy as np
import pytest

from genai_pipeline.clients.weaviate import create_collection, embedding_description, weaviate_client
from genai_pipeline.steps import load

pytestmark = pytest.mark.integration


def rows(uri: str, count: int, fp: str) -> list[dict[str, object]]:
    return [
        {
            "source_uri": uri,
            "title": "T",
            "section": "",
            "text": f"{fp} chunk {i}",
            "chunk_index": i,
            "chunks_per_doc": count,
            "content_hash": f"{fp}-{i}",
            "fingerprint": fp,
            "encoding": "utf-8",
        }
        for i in range(count)
    ]


def vectors(count: int) -> np.ndarray:
    data = np.random.default_rng(0).normal(size=(count, 8)).astype(np.float32)
    return data / np.linalg.norm(data, axis=1, keepdims=True)


@pytest.fixture
def collection(settings_for, tmp_path):
    settings, _ = settings_for({"kb": tmp_path})
    with weaviate_client(settings.weaviate) as client:
        create_collection(client, settings.weaviate.collection, embedding_description("local:all-MiniLM-L6-v2"))
        yield client.collections.get(settings.weaviate.collection)


def test_rewriting_the_same_chunks_never_duplicates(collection) -> None:
    for _ in range(2):
        load.upsert_chunks(collection, rows("kb/a.md", 30, "v1"), vectors(30), batch_size=7, concurrent_requests=2)
    assert len(collection) == 30


def test_stale_chunks_are_deleted_past_the_query_limit(collection) -> None:
    # 250 old chunks with the server's QUERY_MAXIMUM_RESULTS at 100: one delete_many call cannot do it.
    load.upsert_chunks(collection, rows("kb/a.md", 250, "old"), vectors(250), batch_size=100, concurrent_requests=2)
    load.upsert_chunks(collection, rows("kb/b.md", 5, "keep"), vectors(5), batch_size=100, concurrent_requests=2)
    load.upsert_chunks(collection, rows("kb/a.md", 3, "new"), vectors(3), batch_size=100, concurrent_requests=2)
    assert load.delete_stale(collection, "kb/a.md", "new") == 250
    stored = load.stored_documents(collection)
    assert {uri: set(doc.fingerprints) for uri, doc in stored.items()} == {"kb/a.md": {"new"}, "kb/b.md": {"keep"}}
    assert stored["kb/a.md"].complete("new") and stored["kb/b.md"].complete("keep")
    assert load.delete_documents(collection, ["kb/b.md"]) == 5
    assert len(collection) == 3


def test_mismatched_vectors_are_refused_before_writing(collection) -> None:
    with pytest.raises(ValueError, match="3 chunks but 2 vectors"):
        load.upsert_chunks(collection, rows("kb/a.md", 3, "v"), vectors(2), batch_size=10, concurrent_requests=1)
    assert len(collection) == 0


def test_objects_rejected_by_the_server_fail_the_load_loudly(collection) -> None:
    bad = rows("kb/a.md", 2, "v")
    bad[1]["chunks_per_doc"] = "two"  # the schema says INT: Weaviate refuses this object
    with pytest.raises(load.PartialWriteError, match="1 of 2 chunks were not written"):
        load.upsert_chunks(collection, bad, vectors(2), batch_size=10, concurrent_requests=1)


def test_a_document_loaded_part_way_is_not_complete_and_a_reload_repairs_it(collection) -> None:
    whole = rows("kb/a.md", 5, "v1")
    load.upsert_chunks(collection, whole[:3], vectors(3), batch_size=10, concurrent_requests=1)  # failed after 3
    assert not load.stored_documents(collection)["kb/a.md"].complete("v1")  # so the next plan ingests it again
    load.upsert_chunks(collection, whole, vectors(5), batch_size=10, concurrent_requests=1)
    assert load.stored_documents(collection)["kb/a.md"].complete("v1") and len(collection) == 5
