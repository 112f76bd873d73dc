"""The ingestion DAG run by real Airflow against a real Weaviate with the packaged embedding model."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from genai_pipeline.clients.weaviate import weaviate_client
from genai_pipeline.config import Settings
from genai_pipeline.local.airflow_env import airflow_bin, airflow_env, migrate
from genai_pipeline.store import Store

pytestmark = pytest.mark.integration
SAMPLE = Path(__file__).resolve().parents[2] / "src" / "genai_pipeline" / "sample_kb"


def run_dag(settings: Settings, env: dict[str, str], conf: dict | None = None) -> subprocess.CompletedProcess:
    """One `airflow dags test` run of the ingestion DAG (with a run conf: the options `pipeline ingest` sets)."""
    return subprocess.run(
        [airflow_bin(), "dags", "test", "ingest_knowledge_base", *(["-c", json.dumps(conf)] if conf else [])],
        env={**airflow_env(settings), **env},
        capture_output=True,
        text=True,
        timeout=900,
    )


def ingest(settings: Settings, env: dict[str, str], conf: dict | None = None) -> dict:
    """A successful run of the ingestion DAG; returns the run's stored summary."""
    result = run_dag(settings, env, conf)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return latest(settings)


def failed_run(settings: Settings, env: dict[str, str], conf: dict | None = None) -> tuple[dict, str]:
    """A run that must fail; returns its stored summary and its output."""
    result = run_dag(settings, env, conf)
    assert result.returncode != 0, result.stdout[-4000:]
    return latest(settings), result.stdout + result.stderr


def latest(settings: Settings) -> dict:
    return Store(settings.store).read_json("reports/ingest/latest.json")


def expected_objects(settings: Settings, roots: dict[str, Path]) -> dict[str, int]:
    """Chunks per document the sources give now, computed in this process with the pipeline's own code."""
    from genai_pipeline.steps.ingest import source_chunks

    return {d.uri: len(c) for d, c in source_chunks(settings, {n: str(p) for n, p in roots.items()})}


def counts(settings: Settings) -> dict[str, int]:
    return {uri: len(ids) for uri, ids in objects_by_source(settings).items()}


def objects_by_source(settings: Settings) -> dict[str, set[str]]:
    with weaviate_client(settings.weaviate) as client:
        collection = client.collections.get(settings.weaviate.collection)
        found: dict[str, set[str]] = {}
        for item in collection.iterator(return_properties=["source_uri"]):
            found.setdefault(str(item.properties["source_uri"]), set()).add(str(item.uuid))
        return found


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """The shipped sample docs plus one of every kind of bad input."""
    root = tmp_path / "corpus"
    shutil.copytree(SAMPLE, root)
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.md").write_bytes(b"")
    (bad / "blank.md").write_text(" \n \n")
    (bad / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (bad / "nul.md").write_bytes(b"# Title\n\x00\x00 hidden")
    (bad / "latin1.md").write_bytes("caf\xe9".encode("latin-1"))
    (bad / "huge.txt").write_bytes(b"a" * 300_001)
    (root / "one-line.txt").write_text("a long single line about pipelines " * 4_000)
    (tmp_path / "outside.md").write_text("# Outside\n\nnot part of the corpus")
    (bad / "escape.md").symlink_to(tmp_path / "outside.md")
    return root


def test_ingest_is_idempotent_incremental_and_reports_bad_input(settings_for, corpus: Path) -> None:
    settings, env = settings_for(
        {"kb": corpus}, PIPELINE_INGEST__MAX_DOCUMENT_BYTES="300000", PIPELINE_INGEST__BATCH_DOCS="3"
    )
    migrate(settings)

    first = ingest(settings, env)
    good = 10  # 8 sample docs + the one-line file + the Latin-1 one (decoded, not refused)
    assert first["documents"] == good and first["ingested"] == good
    assert first["batches"] == 4  # ceil(10 / 3): task instances follow batches, not chunks
    assert first["chunks"] > good * 5
    assert first["embed_calls"] == 4
    assert first["decoded"] == [{"uri": "kb/bad/latin1.md", "encoding": "iso8859-1"}]
    rejected = {r["uri"]: r["reason"] for r in first["rejected"]}
    assert set(rejected) == {
        f"kb/bad/{name}" for name in ("empty.md", "blank.md", "binary.bin", "nul.md", "huge.txt", "escape.md")
    }
    assert "300,000-byte cap" in rejected["kb/bad/huge.txt"]
    assert "outside the corpus" in rejected["kb/bad/escape.md"]
    stored = objects_by_source(settings)
    assert sum(len(ids) for ids in stored.values()) == first["chunks"]

    again = ingest(settings, env)
    assert again["embed_calls"] == 0 and again["ingested"] == 0 and again["batches"] == 0
    assert again["skipped_unchanged"] == good
    assert objects_by_source(settings) == stored

    edited = corpus / "ingestion.md"
    edited.write_text(edited.read_text().replace("## ", "## Revised: ", 1) + "\n\n## Appendix\n\nNew closing words.\n")
    (corpus / "generation.md").unlink()
    (corpus / "overview.md").write_bytes(b"")  # unusable now, but loaded before
    third = ingest(settings, env)
    assert third["ingested"] == 1 and third["embed_calls"] == 1
    # Its old chunks stay searchable (nothing is deleted for a bad file), and the report says so.
    assert third["stale"] == ["kb/overview.md"]
    assert objects_by_source(settings)["kb/overview.md"] == stored["kb/overview.md"]
    assert third["removed_documents"] == 1 and third["removed_chunks"] == len(stored["kb/generation.md"])
    after = objects_by_source(settings)
    assert "kb/generation.md" not in after
    assert after["kb/ingestion.md"] != stored["kb/ingestion.md"]
    unchanged = set(stored) - {"kb/ingestion.md", "kb/generation.md"}
    assert {uri: after[uri] for uri in unchanged} == {uri: stored[uri] for uri in unchanged}
    assert sum(len(ids) for ids in after.values()) == third["chunks"] + sum(len(stored[uri]) for uri in unchanged)


def test_fail_on_rejected_fails_the_run_but_loads_the_good_documents(settings_for, tmp_path: Path) -> None:
    corpus = tmp_path / "small"
    corpus.mkdir()
    (corpus / "good.md").write_text("# Good\n\nA fine document about Weaviate.")
    (corpus / "bad.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    settings, env = settings_for({"kb": corpus}, PIPELINE_INGEST__FAIL_ON_REJECTED="true")
    migrate(settings)
    result = run_dag(settings, env)
    assert result.returncode != 0
    assert "1 documents rejected (fail_on_rejected is set): kb/bad.md" in result.stdout + result.stderr
    assert set(objects_by_source(settings)) == {"kb/good.md"}
    # The failed run's teardown removed its temporary files (chunks, vectors, batch manifests) all the same.
    assert Store(settings.store).count("ingest") == 0
    assert re.search(r"cleanup: removed [1-9]\d* temporary files of run", result.stdout + result.stderr)


def test_openai_provider_ingests_through_a_faulty_server_with_backoff(settings_for, tmp_path: Path) -> None:
    """The embeddings-API provider against the local model server answering 429/500 to a third of calls."""
    from conftest import environ, free_port
    from genai_pipeline.local.model_server import start_model_server
    from genai_pipeline.local.services import Services

    corpus = tmp_path / "api-corpus"
    shutil.copytree(SAMPLE, corpus)
    port = free_port()
    settings, env = settings_for(
        {"kb": corpus},
        PIPELINE_EMBEDDING__PROVIDER="openai",
        PIPELINE_EMBEDDING__MODEL="all-MiniLM-L6-v2",
        PIPELINE_EMBEDDING__BATCH_SIZE="8",
        PIPELINE_OPENAI__BASE_URL=f"http://127.0.0.1:{port}/v1",
        PIPELINE_OPENAI__MAX_RETRIES="10",
        PIPELINE_INGEST__BATCH_DOCS="4",
    )
    server_env = {
        "PIPELINE_MODEL_SERVER__PORT": str(port),
        "PIPELINE_MODEL_SERVER__FAULT_RATE_429": "0.2",
        "PIPELINE_MODEL_SERVER__FAULT_RATE_500": "0.1",
        "PIPELINE_MODEL_SERVER__FAULT_RETRY_AFTER_SECONDS": "0.2",
        "PIPELINE_MODEL_SERVER__FAULT_SEED": "5",
    }
    services = Services(settings.home)
    with environ({**env, **server_env}):
        start_model_server(Settings(), services, {**env, **server_env})
    try:
        migrate(settings)
        summary = ingest(settings, env)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health") as response:
            injected = json.loads(response.read())["faults_injected"]
    finally:
        services.stop("model-server")
    assert summary["ingested"] == 8 and summary["model"] == "openai:all-MiniLM-L6-v2"
    assert summary["embed_calls"] >= summary["chunks"] / 8  # one request per 8 chunks
    assert injected["429"] + injected["500"] > 0  # the client's backoff really ran
    assert sum(len(ids) for ids in objects_by_source(settings).values()) == summary["chunks"]


def test_no_sequence_of_edits_missing_sources_or_bad_files_deletes_what_is_not_gone(settings_for, tmp_path) -> None:
    """Exact object counts at every step.

    Twice; edit + delete + unreadable + objects lost in Weaviate; source gone; source back.
    """
    from weaviate.classes.query import Filter

    from genai_pipeline.synthetic_corpus import generate_corpus

    corpus = tmp_path / "generated"
    generate_corpus(corpus, 12, seed=3)
    settings, env = settings_for({"gen": corpus}, PIPELINE_INGEST__BATCH_DOCS="5")
    migrate(settings)
    files = sorted(p for p in corpus.rglob("*") if p.is_file())
    edited, deleted, unreadable = files[0], files[1], files[2]

    first = ingest(settings, env)
    want = expected_objects(settings, {"gen": corpus})
    assert counts(settings) == want and first["chunks"] == sum(want.values()) and len(want) == 12

    second = ingest(settings, env)
    assert counts(settings) == want and second["embed_calls"] == 0 and second["ingested"] == 0

    # Two objects of an unchanged document go missing from the collection: the next run loads it again whole,
    # under the same deterministic IDs, and touches nothing else of it.
    stored = objects_by_source(settings)
    touched = {f"gen/{p.relative_to(corpus).as_posix()}" for p in (edited, deleted, unreadable)}
    victim = max(set(stored) - touched, key=lambda uri: len(stored[uri]))
    with weaviate_client(settings.weaviate) as client:
        collection = client.collections.get(settings.weaviate.collection)
        collection.data.delete_many(where=Filter.by_id().contains_any(sorted(stored[victim])[:2]))
    assert len(objects_by_source(settings)[victim]) == len(stored[victim]) - 2
    edited.write_text(edited.read_text() + "\n\nA new closing paragraph about retries and backoff.\n" * 40)
    deleted.unlink()
    stale_uri = f"gen/{unreadable.relative_to(corpus).as_posix()}"
    stale_count = want[stale_uri]
    unreadable.write_bytes(b"\x00\x01\x02 binary now" * 50)
    third = ingest(settings, env)
    want = {**expected_objects(settings, {"gen": corpus}), stale_uri: stale_count}  # its previous version is kept
    assert counts(settings) == want and objects_by_source(settings)[victim] == stored[victim]
    assert third["ingested"] == 2 and third["removed_documents"] == 1 and third["stale"] == [stale_uri]

    corpus.rename(tmp_path / "moved-away")
    gone, output = failed_run(settings, env)
    assert counts(settings) == want and gone["removed_documents"] == 0
    assert "source 'gen' gave no documents" in output

    (tmp_path / "moved-away").rename(corpus)
    back = ingest(settings, env)
    assert counts(settings) == want and back["ingested"] == 0 and back["embed_calls"] == 0


def test_prune_guards_missing_sources_dry_run_and_dropped_sources(settings_for, tmp_path) -> None:
    """The prune's guards, in one history of two sources.

    A missing source keeps its documents; a half-listed one is not halved; a dry run writes nothing; a dropped
    source goes only when asked.
    """
    kb, extra = tmp_path / "kb", tmp_path / "extra"
    shutil.copytree(SAMPLE, kb)
    extra.mkdir()
    (extra / "note.md").write_text("# Note\n\nA short note about Weaviate batching.\n")
    settings, env = settings_for({"kb": kb, "extra": extra})
    migrate(settings)
    ingest(settings, env)
    before = counts(settings)

    # A moved-away folder (or an unmounted volume) looked like "every document removed" and was pruned.
    extra.rename(tmp_path / "moved-away")
    missing, _ = failed_run(settings, env)  # the run says so instead of ending in success
    assert counts(settings) == before and missing["removed_documents"] == 0  # nothing deleted or duplicated
    (unavailable,) = missing["unavailable_sources"]
    assert unavailable["source"] == "extra" and unavailable["kept_documents"] == 1
    assert "does not exist" in unavailable["reason"]
    (tmp_path / "moved-away").rename(extra)

    top = sorted(kb.glob("*.md"))
    assert len(top) == 6  # and 2 more under operations/
    for path in top:  # 6 of 8 documents disappear from the listing
        path.rename(tmp_path / path.name)

    dry = ingest(settings, env, {"dry_run": True})
    assert counts(settings) == before and dry["dry_run"] and dry["removed_documents"] == 0
    assert dry["prune_refused"] == [{"source": "kb", "would_remove": 6, "stored": 8, "share": 0.75}]

    refused, output = failed_run(settings, env)
    assert counts(settings) == before and refused["removed_documents"] == 0
    assert "--allow-mass-prune" in output

    allowed = ingest(settings, env, {"allow_mass_prune": True})
    assert allowed["removed_documents"] == 6
    assert {uri.rsplit("/", 1)[0] for uri in counts(settings)} == {"kb/operations", "extra"}

    only_kb = {"sources": {"kb": str(kb)}}
    kept = ingest(settings, env, only_kb)
    assert "extra/note.md" in counts(settings) and kept["unconfigured_sources"] == {"extra": 1}
    ingest(settings, env, {**only_kb, "prune_removed_sources": True})
    assert "extra/note.md" not in counts(settings)
