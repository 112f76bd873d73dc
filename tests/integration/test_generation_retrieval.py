"""Retrieval on a real Weaviate after the real ingestion steps: real chunks, one per source, models never mixed.

The refusals and the fallback model are step tests on the in-memory services (tests/unit/steps/test_generation.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import environ
from genai_pipeline.clients.context import service_context
from genai_pipeline.clients.weaviate import weaviate_client
from genai_pipeline.config import Settings, get_settings
from genai_pipeline.steps.generation import GenerationError, retrieve
from genai_pipeline.steps.registry import run_step

pytestmark = pytest.mark.integration
SAMPLE = Path(__file__).resolve().parents[2] / "src" / "genai_pipeline" / "sample_kb"


def ingest(env: dict[str, str]) -> None:
    """The sample knowledge base through the real steps, in-process."""
    with environ(env):
        get_settings.cache_clear()
        try:
            run_step("create_schema", {})
            for batch in run_step("plan", {"run_id": "gen"}):
                run_step("load", run_step("embed", run_step("chunk", batch)))
            run_step("report", {"run_id": "gen"})
        finally:
            get_settings.cache_clear()


def test_retrieval_returns_real_chunks_one_per_source_and_refuses_another_embedding_model(
    settings_for, tmp_path: Path
) -> None:
    corpus = tmp_path / "kb"
    shutil.copytree(SAMPLE, corpus)
    settings, env = settings_for({"kb": corpus})
    ingest(env)
    services = service_context(settings)
    sources = retrieve(services, "How are fine-tuning jobs cost-gated?", k=3, threshold=0.9, alpha=None)
    assert 1 <= len(sources) <= 3 and len({s.uri for s in sources}) == len(sources)
    assert sources == sorted(sources, key=lambda s: s.distance)
    with weaviate_client(settings.weaviate) as client:
        collection = client.collections.get(settings.weaviate.collection)
        stored = {(o.properties["source_uri"], o.properties["chunk_index"]) for o in collection.iterator()}
    assert all((s.uri, s.chunk_index) in stored for s in sources)  # real chunks, nothing invented
    hybrid = retrieve(services, "budget_usd cost gate", k=3, threshold=2.0, alpha=0.5)
    assert hybrid and any("fine-tuning" in s.uri for s in hybrid)
    assert retrieve(services, "How are fine-tuning jobs cost-gated?", k=3, threshold=0.01, alpha=None) == []

    with environ(
        {**env, "PIPELINE_EMBEDDING__PROVIDER": "openai", "PIPELINE_EMBEDDING__MODEL": "text-embedding-3-small"}
    ):
        other = Settings()
    with pytest.raises(GenerationError, match="built with the embedding model local:all-MiniLM-L6-v2, but this"):
        retrieve(service_context(other), "anything", k=3, threshold=0.8, alpha=None)
