"""The ingestion steps called as a pod calls them (``run_step``), on the in-memory knowledge base.

These are the safety checks that hold without Airflow's trigger rules. The knowledge base's own behaviour on
Weaviate is held by tests/contracts/test_knowledge_base.py; the DAG runs them on the real one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import isolated_settings
from fakes import InMemoryKnowledgeBase, fake_context
from genai_pipeline.steps.ingest import BatchesFailedError, SourceUnavailableError, source_chunks
from genai_pipeline.steps.registry import run_step
from genai_pipeline.store import Store

SAMPLE = Path(__file__).resolve().parents[3] / "src" / "genai_pipeline" / "sample_kb"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    shutil.copytree(SAMPLE, tmp_path / "kb")
    return tmp_path / "kb"


def context(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, corpus: Path, **env: str):
    settings = isolated_settings(monkeypatch, tmp_path, PIPELINE_INGEST__SOURCES=json.dumps({"kb": str(corpus)}), **env)
    return fake_context(settings, knowledge_base=InMemoryKnowledgeBase(settings.weaviate.collection))


def ingest(ctx, run_id: str, **options) -> list[dict]:
    payload = {"run_id": run_id, "options": options}
    run_step("create_schema", {}, ctx)
    loaded = [
        run_step("load", run_step("embed", run_step("chunk", b, ctx), ctx), ctx) for b in run_step("plan", payload, ctx)
    ]
    run_step("prune", payload, ctx)
    run_step("report", payload, ctx)
    return loaded


def kb_of(ctx) -> InMemoryKnowledgeBase:
    with ctx.knowledge_base() as kb:
        return kb


def test_a_rerun_embeds_nothing_and_an_edit_replaces_only_that_documents_chunks(monkeypatch, tmp_path, corpus) -> None:
    ctx = context(monkeypatch, tmp_path, corpus)
    first = ingest(ctx, "first")
    kb = kb_of(ctx)
    objects = kb.count()
    assert objects == sum(b["written"] for b in first) > 0 and kb.embedding_model() == "local:all-MiniLM-L6-v2"
    assert ingest(ctx, "again") == []  # nothing changed: no batch, no embedding call
    assert ctx.store.read_json("reports/ingest/latest.json")["skipped_unchanged"] == len(kb.stored_documents())
    edited = next(corpus.rglob("*.md"))
    edited.write_text(edited.read_text() + "\n\nOne more paragraph about the pipeline.\n")
    (loaded,) = ingest(ctx, "edit")
    uri = f"kb/{edited.relative_to(corpus).as_posix()}"
    assert loaded["docs"] == 1 and loaded["stale_deleted"] > 0
    document = kb.stored_documents()[uri]
    assert len(document.fingerprints) == 1 and document.complete(next(iter(document.fingerprints)))
    assert any("One more paragraph" in kb.chunk(uri, i)["text"] for i in range(document.objects))
    # Exactly what a fresh run over the edited corpus would hold: no duplicate, no stale chunk.
    fresh = sum(len(chunks) for _, chunks in source_chunks(ctx.settings, ctx.settings.ingest.sources))
    assert kb.count() == fresh


def test_prune_deletes_nothing_unless_every_batch_loaded_and_the_teardown_cleans_up(
    monkeypatch, tmp_path, corpus
) -> None:
    ctx = context(monkeypatch, tmp_path, corpus, PIPELINE_INGEST__BATCH_DOCS="4")
    store = ctx.store
    store.write_json("ingest/dead_run/plan.json", {"left": "by a run killed before its report"})
    run_step("create_schema", {}, ctx)
    batches = run_step("plan", {"run_id": "run 1"}, ctx)
    assert len(batches) == 2 and not store.exists("ingest/dead_run")  # the dead run's files are gone
    # Only the first batch loads: the plan's removals (none here) and any prune must wait.
    embedded = run_step("embed", run_step("chunk", batches[0], ctx), ctx)
    loaded = run_step("load", embedded, ctx)
    assert loaded["written"] == loaded["chunks"] > 0
    pruned = run_step("prune", {"run_id": "run 1"}, ctx)
    assert pruned["skipped"] == "only 1 of 2 batches loaded: nothing is pruned"
    with pytest.raises(BatchesFailedError, match="1 of 2 batches did not load"):
        run_step("report", {"run_id": "run 1"}, ctx)
    assert store.count("ingest") > 0  # the report only summarises
    cleaned = run_step("cleanup", {"run_id": "run 1"}, ctx)  # the teardown, after the failed report
    assert store.keys("ingest") == [] and cleaned["removed_files"] > 0
    # The batch's load cleared and re-run after the teardown (Airflow re-runs the teardown after it):
    # the run's record names the batch, so it is chunked and embedded again and writes the same objects.
    objects = kb_of(ctx).count()
    again = run_step("load", embedded, ctx)
    assert again["written"] == loaded["written"] and kb_of(ctx).count() == objects
    assert run_step("cleanup", {"run_id": "run 1"}, ctx)["removed_files"] > 0
    assert store.keys("ingest") == []
    summary = store.read_json("reports/ingest/latest.json")
    assert summary["failed_batches"] == [1] and summary["chunks"] == loaded["written"]


def test_a_deleted_document_is_pruned_and_a_source_that_lists_empty_keeps_its_objects(
    monkeypatch, tmp_path, corpus
) -> None:
    """An emptied folder looks like an S3 prefix that lists nothing or a volume that is not mounted."""
    ctx = context(monkeypatch, tmp_path, corpus)
    ingest(ctx, "full")
    kb = kb_of(ctx)
    gone = sorted(corpus.rglob("*.md"))[0]
    gone.unlink()
    ingest(ctx, "one gone")
    assert f"kb/{gone.relative_to(corpus).as_posix()}" not in kb.stored_documents()
    before = kb.count()
    shutil.rmtree(corpus)
    corpus.mkdir()  # still there, lists nothing
    assert run_step("plan", {"run_id": "empty"}, ctx) == []
    assert run_step("prune", {"run_id": "empty"}, ctx)["removed_documents"] == 0
    with pytest.raises(SourceUnavailableError, match="source 'kb' gave no documents"):
        run_step("report", {"run_id": "empty"}, ctx)
    assert kb.count() == before > 0


def test_a_run_may_name_only_sources_under_the_allowed_roots(monkeypatch, tmp_path, corpus) -> None:
    """A run's conf comes from whoever may trigger it; the workers read only what the operator allowed."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keys.md").write_text("# Keys\n\nNothing here belongs in the knowledge base.\n")
    ctx = context(monkeypatch, tmp_path, corpus)
    options = {"sources": {"ops": str(corpus / "operations"), "grab": f"{corpus}/../elsewhere"}}
    with pytest.raises(SourceUnavailableError, match=r"'grab' .*refused: .*not under an allowed root"):
        ingest(ctx, "conf", **options)
    loaded = Store(ctx.settings.store).read_json("reports/ingest/latest.json")
    assert loaded["documents"] == 2 and kb_of(ctx).count() > 0  # the two under kb/operations, nothing else
