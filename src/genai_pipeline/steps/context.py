"""What a step works with, handed to it: settings, the store, the knowledge base, the API client, the embedder.

Steps keep their logic and reach the outside world only through this context, so the same step runs on the real
services (:func:`genai_pipeline.clients.context.service_context`, built by the registry in the Airflow worker and
in a step's pod alike) and, in tests, on in-memory implementations that pass the same contract tests. Nothing
connects until a step asks: chunking never opens Weaviate, and a step that never embeds never loads a model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from genai_pipeline.config import Settings
from genai_pipeline.store import Store

if TYPE_CHECKING:  # annotations only: a chunking pod imports neither NumPy nor the embedding code for them
    import numpy as np

    from genai_pipeline.models.embeddings import Embedder
    from genai_pipeline.steps.load import StoredDocument
    from genai_pipeline.steps.prompt import Source


class KnowledgeBase(Protocol):
    """The chunk collection: every read and write the pipeline makes of it.

    A write names its objects by :func:`genai_pipeline.steps.load.chunk_uuid`, so a re-run overwrites what it
    wrote before; deletes remove every match, however many there are.
    """

    name: str

    def exists(self) -> bool:
        """Whether the collection is there."""
        ...

    def ensure(self, embedding_model: str) -> bool:
        """Create the collection recording its embedding model if it is missing; True if it was created.

        A collection made before the model was recorded gets it recorded.
        """
        ...

    def embedding_model(self) -> str | None:
        """The embedding model the collection records (None if it records none)."""
        ...

    def count(self) -> int:
        """How many chunks it holds."""
        ...

    def stored_documents(self) -> dict[str, StoredDocument]:
        """Every stored document by source URI, all of them (no query limit)."""
        ...

    def upsert(self, chunks: Sequence[dict[str, Any]], vectors: np.ndarray) -> int:
        """Write each chunk with its vector; raise ``PartialWriteError`` naming the objects that failed."""
        ...

    def delete_stale(self, source_uri: str, keep_fingerprint: str) -> int:
        """Delete a document's chunks made from another version of it; how many went."""
        ...

    def delete_documents(self, source_uris: Iterable[str]) -> int:
        """Delete every chunk of these documents; how many went."""
        ...

    def nearest(self, vector: Sequence[float], *, text: str, limit: int, alpha: float | None) -> list[Source]:
        """The chunks nearest a query vector, nearest first; hybrid with BM25 on ``text`` when ``alpha`` is set.

        A hybrid result has no distance: it is reported as 0.0, so the distance threshold keeps it.
        """
        ...

    def chunk(self, source_uri: str, chunk_index: int) -> dict[str, Any] | None:
        """One chunk's stored properties, or None."""
        ...


@dataclass
class StepContext:
    """The settings and the services of one step run; each service is made on first use, once.

    ``knowledge_base`` opens a connection per use (``with ctx.knowledge_base() as kb``): a Weaviate client is
    not shared across threads, and a step holds it only while it reads or writes.
    """

    settings: Settings
    knowledge_base: Callable[[], AbstractContextManager[KnowledgeBase]]
    make_openai: Callable[[], Any]
    make_embedder: Callable[[], Embedder]

    @cached_property
    def store(self) -> Store:
        """The shared store (``PIPELINE_STORE``)."""
        return Store(self.settings.store)

    @cached_property
    def openai(self) -> Any:
        """The OpenAI-compatible client (retries, backoff, key rules of the one client factory)."""
        return self.make_openai()

    @cached_property
    def embedder(self) -> Embedder:
        """The configured embedding provider, the one the collection was built with."""
        return self.make_embedder()
