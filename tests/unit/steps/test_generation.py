"""Generation's pure parts: topic checks, source dedup, topics, the Markdown file (the prompt: test_prompt.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import isolated_settings, write_tree
from fakes import InMemoryOpenAI, fake_context
from genai_pipeline.clients.weaviate import embedding_description, recorded_embedding
from genai_pipeline.config import Settings
from genai_pipeline.steps.contracts import TopicsRequest
from genai_pipeline.steps.finetune_store import CHAMPION
from genai_pipeline.steps.generation import (
    GenerationError,
    Source,
    check_topic,
    dedupe_by_source,
    front_matter,
    plan_topics,
    read_chunk,
    retrieve,
    slug,
    to_markdown,
    write_post,
)
from genai_pipeline.steps.registry import run_step


def source(uri: str, distance: float, text: str = "Chunks are loaded into Weaviate.", index: int = 0) -> Source:
    return Source(
        uri=uri, chunk_index=index, section="Ingestion > Load", title="Ingestion", text=text, distance=distance
    )


def test_an_empty_or_huge_topic_is_refused_with_a_reason() -> None:
    with pytest.raises(GenerationError, match="the topic is empty"):
        check_topic("  \n\t ", 500)
    with pytest.raises(GenerationError, match=r"102,400 characters, over the limit of 500"):
        check_topic("x" * 102_400, 500)
    assert check_topic("  Running   offline \n", 500) == "Running offline"


def test_one_chunk_per_source_within_the_threshold_nearest_first() -> None:
    found = [source("a", 0.30, index=1), source("b", 0.10), source("a", 0.20, index=2), source("c", 0.95)]
    kept = dedupe_by_source(found, k=5, threshold=0.8)
    assert [(s.uri, s.chunk_index) for s in kept] == [("b", 0), ("a", 2)]
    assert dedupe_by_source(found, k=1, threshold=0.8)[0].uri == "b"
    assert dedupe_by_source(found, k=5, threshold=0.05) == []


def test_the_collection_records_its_embedding_model() -> None:
    assert recorded_embedding(embedding_description("local:all-MiniLM-L6-v2")) == "local:all-MiniLM-L6-v2"
    assert recorded_embedding(None) is None and recorded_embedding("some other collection") is None


def test_topics_come_from_the_param_else_the_file_else_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = TopicsRequest(run_id="manual__1", topics="[]", k=3, threshold=0.7)
    defaults = [t.topic for t in plan_topics(fake_context(Settings()), request)]
    assert defaults == Settings().generation.topics
    topics = tmp_path / "topics.txt"
    topics.write_text("# ideas\nWhy Assets\n\n" + "y" * 600 + "\nRetries\n", encoding="utf-8")
    monkeypatch.setenv("PIPELINE_GENERATION__TOPICS_FILE", str(topics))
    tasks = plan_topics(fake_context(Settings()), request)
    assert [t.topic for t in tasks] == ["Why Assets", "Retries"]  # the oversized one is left out
    assert tasks[0].label.startswith("why-assets-") and tasks[0].k == 3 and tasks[0].threshold == 0.7
    given = TopicsRequest(run_id="manual__1", topics=json.dumps(["Only this"]), k=3, threshold=0.7)
    assert [t.topic for t in plan_topics(fake_context(Settings()), given)] == ["Only this"]
    with pytest.raises(GenerationError, match="no topic to write about"):
        plan_topics(fake_context(Settings()), TopicsRequest(run_id="r", topics=["  "], k=3, threshold=0.7))


def test_slugs_are_readable_and_distinct() -> None:
    assert slug("Running the pipeline offline!").startswith("running-the-pipeline-offline-")
    assert slug("A/B") != slug("A B") and len(slug("z" * 500)) <= 69


def test_the_markdown_file_has_front_matter_with_model_template_sources_usage_and_the_gate() -> None:
    result = {
        "topic": "Offline runs",
        "post": "Everything runs offline.",
        "status": "needs_review",
        "quality": {"reasons": ["1 sentence(s) passed, fewer than 2"], "supported_share": 1.0},
        "model": "ft:SmolLM2:x",
        "model_role": "champion",
        "template": "rag-v1",
        "sources": [
            {"n": 1, "uri": "kb/a.md", "chunk_index": 2, "section": "Load", "title": "Ingestion", "distance": 0.2}
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20},
        "seconds": 1.0,
    }
    text = to_markdown(result)
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["model"] == "ft:SmolLM2:x" and meta["template"] == "rag-v1" and meta["usage"]["completion_tokens"] == 20
    assert meta["sources"][0]["uri"] == "kb/a.md" and meta["generated_at"].endswith("Z")
    assert "Everything runs offline." in body and "1. Ingestion — Load (`kb/a.md`, chunk 2)" in body
    assert meta["status"] == "needs_review" and meta["quality"]["supported_share"] == 1.0
    assert front_matter(text) == meta  # what report_posts reads back


def test_an_unreachable_weaviate_is_retried_then_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import free_port
    from genai_pipeline.clients import weaviate as factory
    from genai_pipeline.clients.context import service_context

    monkeypatch.setattr(factory, "CONNECT_BACKOFF_SECONDS", 0.01)
    attempts = []
    real = factory._client
    monkeypatch.setattr(factory, "_client", lambda s: attempts.append(1) or real(s))
    port = free_port()
    monkeypatch.setenv("PIPELINE_WEAVIATE__HTTP_PORT", str(port))
    monkeypatch.setenv("PIPELINE_WEAVIATE__GRPC_PORT", str(free_port()))
    with pytest.raises(factory.WeaviateUnavailable, match=f"127.0.0.1:{port} .* did not answer after 4 attempts"):
        retrieve(service_context(Settings()), "anything", k=3, threshold=0.8, alpha=None)
    assert len(attempts) == factory.CONNECT_ATTEMPTS


# -- the steps on the in-memory knowledge base and API -------------------------------------------------------

FACTS = {
    "ports.md": "# Ports\n\nThe Airflow API server listens on port 8080 inside the cluster.\n",
    "store.md": "# Store\n\nBulk files of a run live in the shared store under the ingest folder.\n",
}


def ingested(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, api: InMemoryOpenAI | None = None, **env: str):
    """A context whose knowledge base holds two small documents, loaded by the real steps."""
    corpus = tmp_path / "kb"
    write_tree(corpus, FACTS)
    settings = isolated_settings(monkeypatch, tmp_path, PIPELINE_INGEST__SOURCES=json.dumps({"kb": str(corpus)}), **env)
    ctx = fake_context(settings, openai=api)
    run_step("create_schema", {}, ctx)
    for batch in run_step("plan", {"run_id": "gen"}, ctx):
        run_step("load", run_step("embed", run_step("chunk", batch, ctx), ctx), ctx)
    return ctx


def test_no_collection_or_an_empty_one_is_a_clear_refusal_with_no_sources(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    api = InMemoryOpenAI()
    ctx = fake_context(isolated_settings(monkeypatch, tmp_path), openai=api)
    with pytest.raises(GenerationError, match="does not exist yet: run ingestion first"):
        retrieve(ctx, "anything", k=3, threshold=0.8, alpha=None)
    run_step("create_schema", {}, ctx)
    with pytest.raises(GenerationError, match="is empty: run ingestion first; nothing was invented"):
        write_post(ctx, "anything", k=3, threshold=0.8, alpha=None, model="unused")
    assert api.chats == []  # no model was asked


def test_a_collection_of_another_embedding_model_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ctx = ingested(monkeypatch, tmp_path)
    other = isolated_settings(
        monkeypatch, tmp_path, PIPELINE_EMBEDDING__PROVIDER="openai", PIPELINE_EMBEDDING__MODEL="text-embedding-3-small"
    )
    with ctx.knowledge_base() as kb:
        elsewhere = fake_context(other, knowledge_base=kb)
    with pytest.raises(GenerationError, match="built with the embedding model local:all-MiniLM-L6-v2, but this"):
        retrieve(elsewhere, "anything", k=3, threshold=0.8, alpha=None)


def test_a_post_is_written_by_the_champion_from_the_nearest_sources_and_read_by_the_gate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def reply(model: str, messages: list[dict]) -> str:
        return (
            "The Airflow API server listens on port 8080 inside the cluster [1]. "
            "Bulk files of a run live in the shared store under the ingest folder [2]."
        )

    api = InMemoryOpenAI(reply=reply)
    ctx = ingested(monkeypatch, tmp_path, api)
    with caplog.at_level("WARNING", logger="genai_pipeline.steps.generation"):
        fallback = write_post(ctx, "Which port does the API server use?", alpha=None, model=None, threshold=1.0)
    assert fallback["model"] == "SmolLM2-135M-Instruct" and fallback["model_role"] == "fallback"
    assert "no champion model yet: writing with the fallback SmolLM2-135M-Instruct" in caplog.text

    ctx.store.write_json(CHAMPION, {"model": "ft:SmolLM2-135M-Instruct:pipeline:1"})
    result = write_post(ctx, "Which port does the API server use?", alpha=None, model=None, k=2, threshold=2.0)
    assert (result["model"], result["model_role"]) == ("ft:SmolLM2-135M-Instruct:pipeline:1", "champion")
    assert result["sources"][0]["uri"] == "kb/ports.md" and len(result["sources"]) == 2
    asked = api.chats[-1]
    assert asked["model"] == result["model"] and "port 8080" in asked["messages"][1]["content"]
    assert result["status"] == "published" and result["quality"]["supported_share"] == 1.0
    assert "port 8080 inside the cluster" in read_chunk(ctx, "kb/ports.md", 0)["text"]
    with pytest.raises(GenerationError, match=r"no chunk 5 of kb/ports\.md"):
        read_chunk(ctx, "kb/ports.md", 5)


def test_an_invented_post_is_written_for_review_not_published(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    api = InMemoryOpenAI(reply=lambda model, messages: "The API server listens on port 9999 and runs on Mars [1].")
    ctx = ingested(monkeypatch, tmp_path, api)
    result = write_post(ctx, "Which port does the API server use?", alpha=None, model=None, threshold=1.0)
    assert result["status"] == "needs_review" and result["quality"]["supported_share"] == 0.0
