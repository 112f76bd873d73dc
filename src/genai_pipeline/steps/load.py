"""What makes loading idempotent and incremental: fingerprints, deterministic object IDs, stored documents.

The knowledge base (:class:`genai_pipeline.steps.context.KnowledgeBase`) does the writes; the load step orders
them: a changed document's new chunks are written first, its stale chunks deleted only after every write
succeeded, so a failure never leaves a document with nothing.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from genai_pipeline.config import Settings
from genai_pipeline.steps.prompt import Source

# Bumped when chunking changes in a way that must re-embed every document.
CHUNKER_VERSION = "1"
# The properties each chunk object carries and their types, written as the chunk step made them: the schema
# of the knowledge base. ``encoding`` is what the source file was decoded from (a legacy one is detected, never
# refused).
PROPERTIES: dict[str, type] = {
    "source_uri": str,
    "title": str,
    "section": str,
    "text": str,
    "chunk_index": int,
    "chunks_per_doc": int,
    "content_hash": str,
    "fingerprint": str,
    "encoding": str,
}
# Compared whole (no word splitting), and the ones queries filter on.
EXACT_PROPERTIES = frozenset({"source_uri", "content_hash", "fingerprint", "encoding"})
FILTERED_PROPERTIES = frozenset({"source_uri", "fingerprint"})
# What a query returns of each chunk: enough to cite it and to put its text in a prompt.
RETURNED_PROPERTIES = ("source_uri", "chunk_index", "section", "title", "text")


class PartialWriteError(RuntimeError):
    """The knowledge base accepted a batch but dropped objects; the message lists the first few."""


def embedding_model_id(settings: Settings) -> str:
    """Provider and model, as the collection records it and fingerprints name it: switching either re-embeds all."""
    return f"{settings.embedding.provider.value}:{settings.embedding.model}"


def fingerprint(content_hash: str, *, model: str, size: int, overlap: int) -> str:
    """What a document's chunks were made from: bytes, model and chunking. Equal means skip."""
    text = "\x1f".join([content_hash, model, str(size), str(overlap), CHUNKER_VERSION])
    return hashlib.sha256(text.encode()).hexdigest()


def chunk_uuid(source_uri: str, chunk_index: int, content_hash: str) -> str:
    """Deterministic object ID from one canonical string, so a re-run overwrites, never duplicates.

    A UUIDv5 in the DNS namespace, as Weaviate's ``generate_uuid5`` makes it: collections loaded before keep
    their IDs.
    """
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{source_uri}\x1f{chunk_index}\x1f{content_hash}"))


@dataclass(frozen=True)
class StoredDocument:
    """What the knowledge base holds of one document: its chunks' fingerprints, how many there are and should be."""

    fingerprints: frozenset[str]
    objects: int
    expected: int

    def complete(self, fingerprint: str) -> bool:
        """Loaded whole from exactly this version: else the document is ingested again.

        A load that failed part-way leaves fewer objects than ``chunks_per_doc``; deterministic IDs make
        the repair overwrite what is there and add what is missing.
        """
        return self.fingerprints == {fingerprint} and self.objects == self.expected


def stored_documents(objects: Iterable[dict[str, object]]) -> dict[str, StoredDocument]:
    """Stored documents by source URI, from every object's ``source_uri``, ``fingerprint`` and ``chunks_per_doc``."""
    fingerprints: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    expected: dict[str, int] = defaultdict(int)
    for properties in objects:
        uri = str(properties["source_uri"])
        fingerprints[uri].add(str(properties["fingerprint"]))
        counts[uri] += 1
        expected[uri] = max(expected[uri], int(properties.get("chunks_per_doc") or 0))  # type: ignore[call-overload]
    return {uri: StoredDocument(frozenset(fps), counts[uri], expected[uri]) for uri, fps in fingerprints.items()}


def retrieved_source(properties: Mapping[str, Any], distance: float | None) -> Source:
    """A retrieved chunk as a prompt's source; a hybrid match carries no distance and counts as 0.0."""
    return Source(
        uri=properties["source_uri"],
        chunk_index=int(properties["chunk_index"]),
        section=properties.get("section") or "",
        title=properties.get("title") or "",
        text=properties["text"],
        distance=float(distance if distance is not None else 0.0),
    )


def failure_summary(failed: list[tuple[dict[str, object], str]], total: int) -> PartialWriteError:
    """The error for objects a write dropped: how many of how many, and the first three with their reasons."""
    sample = "; ".join(f"{p.get('source_uri')}#{p.get('chunk_index')}: {message}" for p, message in failed[:3])
    return PartialWriteError(f"{len(failed)} of {total} chunks were not written ({sample})")
