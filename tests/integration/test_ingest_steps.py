"""The ingestion steps called as a pod calls them, against a real Weaviate.

These are the safety checks that hold without Airflow's trigger rules.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import environ
from genai_pipeline.config import get_settings
from genai_pipeline.steps.ingest import BatchesFailedError
from genai_pipeline.steps.registry import run_step
from genai_pipeline.store import Store

pytestmark = pytest.mark.integration


def object_count(settings) -> int:
    from genai_pipeline.clients.weaviate import weaviate_client

    with weaviate_client(settings.weaviate) as client:
        return len(client.collections.get(settings.weaviate.collection))


SAMPLE = Path(__file__).resolve().parents[2] / "src" / "genai_pipeline" / "sample_kb"


def test_prune_deletes_nothing_unless_every_batch_loaded_and_the_teardown_cleans_up(settings_for, tmp_path) -> None:
    corpus = tmp_path / "kb"
    shutil.copytree(SAMPLE, corpus)
    settings, env = settings_for({"kb": corpus}, PIPELINE_INGEST__BATCH_DOCS="4")
    store = Store(settings.store)
    store.write_json("ingest/dead_run/plan.json", {"left": "by a run killed before its report"})
    with environ(env):
        get_settings.cache_clear()
        try:
            run_step("create_schema", {})
            batches = run_step("plan", {"run_id": "run 1"})
            assert len(batches) == 2 and not store.exists("ingest/dead_run")  # the dead run's files are gone
            # Only the first batch loads: the plan's removals (none here) and any prune must wait.
            embedded = run_step("embed", run_step("chunk", batches[0]))
            loaded = run_step("load", embedded)
            assert loaded["written"] == loaded["chunks"] > 0
            pruned = run_step("prune", {"run_id": "run 1"})
            assert pruned["skipped"] == "only 1 of 2 batches loaded: nothing is pruned"
            with pytest.raises(BatchesFailedError, match="1 of 2 batches did not load"):
                run_step("report", {"run_id": "run 1"})
            assert store.count("ingest") > 0  # the report only summarises
            cleaned = run_step("cleanup", {"run_id": "run 1"})  # the teardown, after the failed report
            assert store.keys("ingest") == [] and cleaned["removed_files"] > 0
            # The batch's load cleared and re-run after the teardown (Airflow re-runs the teardown after it):
            # the run's record names the batch, so it is chunked and embedded again and writes the same objects.
            objects = object_count(settings)
            again = run_step("load", embedded)
            assert again["written"] == loaded["written"] and object_count(settings) == objects
            assert run_step("cleanup", {"run_id": "run 1"})["removed_files"] > 0
        finally:
            get_settings.cache_clear()
    assert store.keys("ingest") == []
    summary = store.read_json("reports/ingest/latest.json")
    assert summary["failed_batches"] == [1] and summary["chunks"] == loaded["written"]


def test_a_source_that_lists_empty_keeps_its_objects(settings_for, tmp_path) -> None:
    """An emptied folder looks like an S3 prefix that lists nothing or a volume that is not mounted."""
    from genai_pipeline.steps.ingest import SourceUnavailableError

    corpus = tmp_path / "kb"
    shutil.copytree(SAMPLE, corpus)
    settings, env = settings_for({"kb": corpus})
    with environ(env):
        get_settings.cache_clear()
        try:
            run_step("create_schema", {})
            for batch in run_step("plan", {"run_id": "full"}):
                run_step("load", run_step("embed", run_step("chunk", batch)))
            run_step("prune", {"run_id": "full"})
            run_step("report", {"run_id": "full"})
            before = object_count(settings)
            shutil.rmtree(corpus)
            corpus.mkdir()  # still there, lists nothing
            assert run_step("plan", {"run_id": "empty"}) == []
            assert run_step("prune", {"run_id": "empty"})["removed_documents"] == 0
            with pytest.raises(SourceUnavailableError, match="source 'kb' gave no documents"):
                run_step("report", {"run_id": "empty"})
        finally:
            get_settings.cache_clear()
    assert object_count(settings) == before > 0


def test_a_run_may_name_only_sources_under_the_allowed_roots(settings_for, tmp_path) -> None:
    """A run's conf comes from whoever may trigger it; the workers read only what the operator allowed."""
    from genai_pipeline.steps.ingest import SourceUnavailableError

    corpus = tmp_path / "kb"
    shutil.copytree(SAMPLE, corpus)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keys.md").write_text("# Keys\n\nNothing here belongs in the knowledge base.\n")
    settings, env = settings_for({"kb": corpus})
    options = {"sources": {"ops": str(corpus / "operations"), "grab": f"{corpus}/../elsewhere"}}
    with environ(env):
        get_settings.cache_clear()
        try:
            run_step("create_schema", {})
            for batch in run_step("plan", {"run_id": "conf", "options": options}):
                run_step("load", run_step("embed", run_step("chunk", batch)))
            with pytest.raises(SourceUnavailableError, match=r"'grab' .*refused: .*not under an allowed root"):
                run_step("report", {"run_id": "conf", "options": options})
        finally:
            get_settings.cache_clear()
    loaded = Store(settings.store).read_json("reports/ingest/latest.json")
    assert loaded["documents"] == 2 and object_count(settings) > 0  # the two under kb/operations, nothing else
