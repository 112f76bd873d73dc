"""Idempotent, incremental writes of chunks into Weaviate.

Order matters: a changed document's new chunks are written first, its stale chunks deleted only after
every write succeeded, so a failure never leaves a document with nothing. Deletes loop until nothing
matches, because one ``delete_many`` call stops at the server's query limit.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from weaviate.classes.query import Filter
from weaviate.collections import Collection
from weaviate.util import generate_uuid5

# Bumped when chunking changes in a way that must re-embed every document.
CHUNKER_VERSION = "1"


class PartialWriteError(RuntimeError):
    """Weaviate accepted a batch but dropped objects; the message lists the first few."""


def fingerprint(content_hash: str, *, model: str, size: int, overlap: int) -> str:
    """What a document's chunks were made from: bytes, model and chunking. Equal means skip."""
    text = "\x1f".join([content_hash, model, str(size), str(overlap), CHUNKER_VERSION])
    return hashlib.sha256(text.encode()).hexdigest()


def chunk_uuid(source_uri: str, chunk_index: int, content_hash: str) -> str:
    """Deterministic object ID from one canonical string, so a re-run overwrites, never duplicates."""
    return generate_uuid5(f"{source_uri}\x1f{chunk_index}\x1f{content_hash}")


@dataclass(frozen=True)
class StoredDocument:
    """What Weaviate holds of one document: its chunks' fingerprints, how many there are and should be."""

    fingerprints: frozenset[str]
    objects: int
    expected: int

    def complete(self, fingerprint: str) -> bool:
        """Loaded whole from exactly this version: else the document is ingested again.

        A load that failed part-way leaves fewer objects than ``chunks_per_doc``; deterministic IDs make
        the repair overwrite what is there and add what is missing.
        """
        return self.fingerprints == {fingerprint} and self.objects == self.expected


def stored_documents(collection: Collection) -> dict[str, StoredDocument]:
    """Every stored document by source URI, read with the cursor API (no query-limit truncation)."""
    fingerprints: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    expected: dict[str, int] = defaultdict(int)
    for item in collection.iterator(return_properties=["source_uri", "fingerprint", "chunks_per_doc"]):
        uri = str(item.properties["source_uri"])
        fingerprints[uri].add(str(item.properties["fingerprint"]))
        counts[uri] += 1
        expected[uri] = max(expected[uri], int(item.properties.get("chunks_per_doc") or 0))
    return {uri: StoredDocument(frozenset(fps), counts[uri], expected[uri]) for uri, fps in fingerprints.items()}


def upsert_chunks(
    collection: Collection,
    chunks: Sequence[dict[str, object]],
    vectors: np.ndarray,
    *,
    batch_size: int,
    concurrent_requests: int,
) -> int:
    """Write every chunk with its vector; raise :class:`PartialWriteError` if any object failed."""
    if len(chunks) != len(vectors):
        raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
    with collection.batch.fixed_size(batch_size=batch_size, concurrent_requests=concurrent_requests) as batch:
        for chunk, vector in zip(chunks, vectors, strict=True):
            properties = {key: chunk[key] for key in _PROPERTIES}
            uuid = chunk_uuid(str(chunk["source_uri"]), int(chunk["chunk_index"]), str(chunk["content_hash"]))
            batch.add_object(properties=properties, vector=vector.tolist(), uuid=uuid)
    failed = collection.batch.failed_objects
    if failed:
        sample = "; ".join(
            f"{f.object_.properties.get('source_uri')}#{f.object_.properties.get('chunk_index')}: {f.message}"
            for f in failed[:3]
        )
        raise PartialWriteError(f"{len(failed)} of {len(chunks)} chunks were not written ({sample})")
    return len(chunks)


_PROPERTIES = (
    "source_uri",
    "title",
    "section",
    "text",
    "chunk_index",
    "chunks_per_doc",
    "content_hash",
    "fingerprint",
    "encoding",
)


def delete_stale(collection: Collection, source_uri: str, keep_fingerprint: str) -> int:
    """Delete a document's chunks made from an older version of it."""
    where = Filter.by_property("source_uri").equal(source_uri) & Filter.by_property("fingerprint").not_equal(
        keep_fingerprint
    )
    return _delete_all(collection, where)


def delete_documents(collection: Collection, source_uris: Iterable[str]) -> int:
    """Delete every chunk of documents that left the corpus."""
    return sum(_delete_all(collection, Filter.by_property("source_uri").equal(uri)) for uri in source_uris)


def _delete_all(collection: Collection, where) -> int:
    deleted = 0
    while True:
        result = collection.data.delete_many(where=where)
        if result.failed:
            raise PartialWriteError(f"{result.failed} objects could not be deleted")
        deleted += result.successful
        if result.matches == 0 or result.successful == 0:
            return deleted
