"""Generation's refusals and retrieval against a real Weaviate: nothing is invented, models never mixed."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from conftest import environ
from genai_pipeline.clients.weaviate import weaviate_client
from genai_pipeline.config import Settings, get_settings
from genai_pipeline.steps.generation import GenerationError, current_model, retrieve, write_post
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


def test_no_collection_or_an_empty_one_is_a_clear_refusal_with_no_sources(settings_for, tmp_path: Path) -> None:
    settings, env = settings_for({"kb": tmp_path / "none"})
    with pytest.raises(GenerationError, match="does not exist yet: run ingestion first"):
        retrieve(settings, "anything", k=3, threshold=0.8, alpha=None)
    with environ(env):
        get_settings.cache_clear()
        run_step("create_schema", {})
        get_settings.cache_clear()
    with pytest.raises(GenerationError, match="is empty: run ingestion first; nothing was invented"):
        write_post(settings, "anything", k=3, threshold=0.8, alpha=None, model="unused")


def test_retrieval_returns_real_chunks_one_per_source_and_refuses_another_embedding_model(
    settings_for, tmp_path: Path
) -> None:
    corpus = tmp_path / "kb"
    shutil.copytree(SAMPLE, corpus)
    settings, env = settings_for({"kb": corpus})
    ingest(env)
    sources = retrieve(settings, "How are fine-tuning jobs cost-gated?", k=3, threshold=0.9, alpha=None)
    assert 1 <= len(sources) <= 3 and len({s.uri for s in sources}) == len(sources)
    assert sources == sorted(sources, key=lambda s: s.distance)
    with weaviate_client(settings.weaviate) as client:
        collection = client.collections.get(settings.weaviate.collection)
        stored = {(o.properties["source_uri"], o.properties["chunk_index"]) for o in collection.iterator()}
    assert all((s.uri, s.chunk_index) in stored for s in sources)  # real chunks, nothing invented
    hybrid = retrieve(settings, "budget_usd cost gate", k=3, threshold=2.0, alpha=0.5)
    assert hybrid and any("fine-tuning" in s.uri for s in hybrid)
    assert retrieve(settings, "How are fine-tuning jobs cost-gated?", k=3, threshold=0.01, alpha=None) == []

    with environ(
        {**env, "PIPELINE_EMBEDDING__PROVIDER": "openai", "PIPELINE_EMBEDDING__MODEL": "text-embedding-3-small"}
    ):
        other = Settings()
    with pytest.raises(GenerationError, match="built with the embedding model local:all-MiniLM-L6-v2, but this"):
        retrieve(other, "anything", k=3, threshold=0.8, alpha=None)


def test_without_a_champion_the_fallback_model_writes_and_the_log_says_so(
    settings_for, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings, _ = settings_for({"kb": tmp_path / "kb"})
    with caplog.at_level(logging.WARNING, logger="genai_pipeline.steps.generation"):
        assert current_model(settings) == ("SmolLM2-135M-Instruct", "fallback")
    assert "no champion model yet: writing with the fallback SmolLM2-135M-Instruct" in caplog.text
