"""`pipeline lineage` from OpenLineage events: documents → collection → post, examples → JSONL → job → model.

The events are written the way the file transport writes them (one JSON file each), with the datasets the
steps name; the real capture from a whole run is asserted in tests/integration/test_demo.py.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from genai_pipeline.cli import main
from genai_pipeline.config import get_settings
from genai_pipeline.lineage_events import LineageGraph, LineageNotFound

API = "http://127.0.0.1:8088/v1"
KB = ("weaviate://127.0.0.1:8079", "KnowledgeBase")
MODEL_V1, MODEL_V2 = "ft:base:x:job1", "ft:base:x:job2"


class Capture:
    """Writes a START and a COMPLETE event per step run, one file per event, one second apart."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.clock = folder, 0
        folder.mkdir(parents=True, exist_ok=True)

    def run(self, job: str, inputs: list[tuple[str, str]], outputs: list[tuple[str, str]], dag_run: str = "r") -> None:
        run_id = str(uuid.uuid4())
        for kind, datasets in (("START", {}), ("COMPLETE", {"inputs": inputs, "outputs": outputs})):
            self.clock += 1
            event = {
                "eventType": kind,
                "eventTime": f"2026-11-30T10:{self.clock // 60:02d}:{self.clock % 60:02d}.000000+00:00",
                "run": {"runId": run_id, "facets": {"airflow": {"dagRun": {"run_id": dag_run}}}},
                "job": {"namespace": "genai-pipeline", "name": job},
                **{side: [{"namespace": n, "name": m} for n, m in items] for side, items in datasets.items()},
            }
            (self.folder / f"event-{self.clock:04d}.json").write_text(json.dumps(event) + "\n")


def f(path: str) -> tuple[str, str]:
    return ("file", path)


def tune(capture: Capture, examples: list[str], model: str, job: str) -> None:
    """Format → evaluate → combine → submit → results → promote, as the fine-tuning DAGs run them."""
    capture.run("format_examples.format_examples", [f(e) for e in examples], [f("/s/formatted/train/short.jsonl")])
    capture.run("evaluate_examples.evaluate_examples", [f("/s/formatted/train/short.jsonl")], [f("/s/gate/train")])
    capture.run("evaluate_examples.combine_examples", [f("/s/gate/train")], [f(f"/s/datasets/{job}/train.jsonl")])
    capture.run(
        "fine_tune.submit_fine_tune",
        [f(f"/s/datasets/{job}/train.jsonl"), (API, "models/base")],
        [(API, f"fine_tuning/jobs/{job}")],
    )
    capture.run("fine_tune.fine_tune_results", [(API, f"fine_tuning/jobs/{job}")], [(API, f"models/{model}")])
    capture.run("champion_challenger.promote_challenger", [(API, f"models/{model}")], [f("/s/champion/current.json")])


@pytest.fixture
def capture(tmp_path: Path) -> Capture:
    capture = Capture(tmp_path / "lineage")
    for batch, docs in enumerate((["/kb/a.md", "/kb/b.md"], ["/kb/c.md"])):
        chunks, vectors = f(f"/s/ingest/run1/chunks/{batch}.jsonl"), f(f"/s/ingest/run1/vectors/{batch}")
        capture.run("ingest_knowledge_base.ingest_batch.chunk", [f(d) for d in docs], [chunks], "ingest1")
        capture.run("ingest_knowledge_base.ingest_batch.embed", [chunks], [vectors], "ingest1")
        capture.run("ingest_knowledge_base.ingest_batch.load", [chunks, vectors], [KB], "ingest1")
    tune(capture, ["/ex/train/short/one.txt", "/ex/train/short/two.txt"], MODEL_V1, "job1")
    # The group file is rewritten by a later run with other examples: the first model must not claim them.
    tune(capture, ["/ex/train/short/three.txt"], MODEL_V2, "job2")
    capture.run(
        "generate_content.generate_post",
        [f("/kb/b.md"), KB, (API, f"models/{MODEL_V2}")],
        [f("/s/posts/running-offline.md")],
        "gen1",
    )
    return capture


def test_a_post_names_its_retrieved_documents_and_the_examples_behind_its_model(capture: Capture) -> None:
    graph = LineageGraph.from_folder(capture.folder)
    answer = graph.trace(graph.resolve("running-offline"))
    assert answer.sources == {
        "documents": ["/kb/b.md"],
        "examples": ["/ex/train/short/three.txt"],
        "base models": [f"{API}/models/base"],
    }
    assert answer.knowledge_bases == ["weaviate://127.0.0.1:8079/KnowledgeBase"]
    assert answer.steps[0].job == "generate_content.generate_post" and answer.steps[0].dag_run == "gen1"


def test_a_model_is_traced_through_the_version_of_each_file_it_read(capture: Capture) -> None:
    graph = LineageGraph.from_folder(capture.folder)
    answer = graph.trace(graph.resolve(MODEL_V1))
    assert answer.sources["examples"] == ["/ex/train/short/one.txt", "/ex/train/short/two.txt"]
    assert [s.step for s in answer.steps] == [
        "fine_tune_results",
        "submit_fine_tune",
        "combine_examples",
        "evaluate_examples",
        "format_examples",
    ]
    # The champion record is rewritten at each promotion: it traces to the newest one.
    assert graph.trace(graph.resolve("/s/champion/current.json")).sources["examples"] == ["/ex/train/short/three.txt"]


def test_the_collection_itself_lists_every_document_loaded(capture: Capture) -> None:
    graph = LineageGraph.from_folder(capture.folder)
    assert graph.trace(graph.resolve("KnowledgeBase")).sources["documents"] == ["/kb/a.md", "/kb/b.md", "/kb/c.md"]


def test_unknown_and_ambiguous_targets_are_explained(capture: Capture, tmp_path: Path) -> None:
    graph = LineageGraph.from_folder(capture.folder)
    with pytest.raises(LineageNotFound, match=f"models with events: base:x|{MODEL_V1}, {MODEL_V2}"):
        graph.resolve("ft:nothing")
    with pytest.raises(LineageNotFound, match="several datasets"):
        graph.resolve("train.jsonl")
    with pytest.raises(LineageNotFound, match="no OpenLineage events"):
        LineageGraph.from_folder(tmp_path / "empty").resolve("x")


def test_the_cli_answers_from_the_events(capture: Capture, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PIPELINE_LINEAGE__EVENTS_DIR", str(capture.folder))
    monkeypatch.setenv("PIPELINE_STORE_URI", str(capture.folder.parent / "store"))
    get_settings.cache_clear()
    try:
        assert main(["lineage", "/s/posts/running-offline.md"]) == 0
        out = capsys.readouterr().out
        assert "documents        1\n    /kb/b.md" in out and "examples         1\n    /ex/train/short/three.txt" in out
        assert main(["lineage", MODEL_V1, "--json"]) == 0
        events = json.loads(capsys.readouterr().out)["events"]
        assert events["sources"]["examples"] == ["/ex/train/short/one.txt", "/ex/train/short/two.txt"]
        assert main(["lineage", "ft:nothing"]) == 1
        assert "no lineage for 'ft:nothing'" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()
