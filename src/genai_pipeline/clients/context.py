"""The step context on the real services: Weaviate, the OpenAI-compatible API, the configured embedder.

The registry builds one per step run, in the Airflow worker and in a step's pod alike; the CLI and the web page
build one for the steps they call. Each client is imported when first used, so a step pays only for what it
touches (a chunking pod never imports the Weaviate or OpenAI SDKs).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from genai_pipeline.config import Settings
from genai_pipeline.steps.context import KnowledgeBase, StepContext

if TYPE_CHECKING:
    from genai_pipeline.models.embeddings import Embedder


def service_context(settings: Settings) -> StepContext:
    """A context whose services are the configured ones."""

    @contextmanager
    def knowledge_base() -> Iterator[KnowledgeBase]:
        from genai_pipeline.clients.knowledge_base import open_knowledge_base

        with open_knowledge_base(settings.weaviate) as kb:
            yield kb

    def openai() -> Any:
        from genai_pipeline.clients.openai_compat import make_openai_client

        return make_openai_client(settings)

    def embedder() -> Embedder:
        from genai_pipeline.models.embeddings import make_embedder

        return make_embedder(settings)

    return StepContext(settings, knowledge_base, openai, embedder)
