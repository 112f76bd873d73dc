"""The knowledge base on Weaviate: the only code that queries or writes the chunk collection.

Deletes loop until nothing matches, because one ``delete_many`` call stops at the server's query limit; the
stored documents are read with the cursor API, which no query limit truncates.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import weaviate
from weaviate.classes.query import Filter, MetadataQuery

from genai_pipeline.clients.weaviate import (
    create_collection,
    embedding_description,
    recorded_embedding,
    weaviate_client,
)
from genai_pipeline.config import WeaviateSettings
from genai_pipeline.steps import load
from genai_pipeline.steps.prompt import Source


class WeaviateKnowledgeBase:
    """The chunk collection through one connected client (one per step: the batcher is not thread-safe)."""

    def __init__(self, client: weaviate.WeaviateClient, settings: WeaviateSettings) -> None:
        self.name = settings.collection
        self._client = client
        self._batch_size = settings.batch_size
        self._concurrent_requests = settings.concurrent_requests

    @property
    def _collection(self) -> Any:
        return self._client.collections.get(self.name)

    def exists(self) -> bool:
        """Whether the collection is there."""
        return self._client.collections.exists(self.name)

    def ensure(self, embedding_model: str) -> bool:
        """Create the collection recording its embedding model if missing; record the model on an older one."""
        if not self.exists():
            create_collection(self._client, self.name, embedding_description(embedding_model))
            return True
        if self.embedding_model() is None:
            # Made before the model was recorded: every stored chunk's fingerprint names this model's run.
            self._collection.config.update(description=embedding_description(embedding_model))
        return False

    def embedding_model(self) -> str | None:
        """The embedding model the collection's description records."""
        return recorded_embedding(self._collection.config.get().description)

    def count(self) -> int:
        """How many chunks it holds."""
        return len(self._collection)

    def stored_documents(self) -> dict[str, load.StoredDocument]:
        """Every stored document by source URI (cursor API)."""
        objects = self._collection.iterator(return_properties=["source_uri", "fingerprint", "chunks_per_doc"])
        return load.stored_documents(item.properties for item in objects)

    def upsert(self, chunks: Sequence[dict[str, Any]], vectors: np.ndarray) -> int:
        """Write every chunk with its vector; raise ``PartialWriteError`` if any object failed."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        collection = self._collection
        with collection.batch.fixed_size(
            batch_size=self._batch_size, concurrent_requests=self._concurrent_requests
        ) as batch:
            for chunk, vector in zip(chunks, vectors, strict=True):
                batch.add_object(
                    properties={key: chunk[key] for key in load.PROPERTIES},
                    vector=vector.tolist(),
                    uuid=load.chunk_uuid(
                        str(chunk["source_uri"]), int(chunk["chunk_index"]), str(chunk["content_hash"])
                    ),
                )
        failed = collection.batch.failed_objects
        if failed:
            raise load.failure_summary([(f.object_.properties, f.message) for f in failed], len(chunks))
        return len(chunks)

    def delete_stale(self, source_uri: str, keep_fingerprint: str) -> int:
        """Delete a document's chunks made from another version of it."""
        where = Filter.by_property("source_uri").equal(source_uri) & Filter.by_property("fingerprint").not_equal(
            keep_fingerprint
        )
        return self._delete_all(where)

    def delete_documents(self, source_uris: Iterable[str]) -> int:
        """Delete every chunk of these documents."""
        return sum(self._delete_all(Filter.by_property("source_uri").equal(uri)) for uri in source_uris)

    def _delete_all(self, where: Any) -> int:
        deleted = 0
        while True:
            result = self._collection.data.delete_many(where=where)
            if result.failed:
                raise load.PartialWriteError(f"{result.failed} objects could not be deleted")
            deleted += result.successful
            if result.matches == 0 or result.successful == 0:
                return deleted

    def nearest(self, vector: Sequence[float], *, text: str, limit: int, alpha: float | None) -> list[Source]:
        """Nearest chunks by vector, or hybrid with BM25 on ``text`` (no distance: reported as 0.0)."""
        metadata, returned = MetadataQuery(distance=True), list(load.RETURNED_PROPERTIES)
        if alpha is None:
            found = self._collection.query.near_vector(
                list(vector), limit=limit, return_metadata=metadata, return_properties=returned
            )
        else:
            found = self._collection.query.hybrid(
                text,
                vector=list(vector),
                alpha=alpha,
                limit=limit,
                return_metadata=metadata,
                return_properties=returned,
            )
        return [load.retrieved_source(o.properties, o.metadata.distance) for o in found.objects]

    def chunk(self, source_uri: str, chunk_index: int) -> dict[str, Any] | None:
        """One chunk by source URI and index."""
        found = self._collection.query.fetch_objects(
            filters=Filter.by_property("source_uri").equal(source_uri)
            & Filter.by_property("chunk_index").equal(chunk_index),
            limit=1,
            return_properties=list(load.RETURNED_PROPERTIES),
        )
        return dict(found.objects[0].properties) if found.objects else None


@contextmanager
def open_knowledge_base(settings: WeaviateSettings) -> Iterator[WeaviateKnowledgeBase]:
    """The knowledge base on a connected client, closed on exit."""
    with weaviate_client(settings) as client:
        yield WeaviateKnowledgeBase(client, settings)
