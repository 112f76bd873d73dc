"""`pipeline demo` as a user runs it: the README's one command, from the start DAG to the posts and their lineage.

Its `pipeline ingest PATH` and Ctrl-C siblings are in test_cli_runs.py, so that a second pytest worker runs them
while this, the longest test, runs.
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from cli_user import leftovers, pipeline, user_env
from conftest import free_port
from genai_pipeline.lineage_events import LineageGraph
from genai_pipeline.steps import finetune_store as layout
from genai_pipeline.steps import ingest_store
from genai_pipeline.steps.generation import front_matter
from genai_pipeline.steps.post_quality import split_sentences
from genai_pipeline.store import Store

pytestmark = pytest.mark.integration
SAMPLE = Path(__file__).resolve().parents[2] / "src" / "genai_pipeline" / "sample_kb"


# A new network namespace with only loopback up: what runs inside has no route anywhere, so a run that passes
# there proves the pipeline needs no network (an air-gapped machine's case). Unprivileged user namespaces
# make it work without root; where they are refused, the run goes on with the network and says so.
LOOPBACK_ONLY = ["unshare", "--map-root-user", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "offline"]


def loopback_only() -> list[str]:
    """The prefix that runs a command with loopback only, or none (with a warning) where that is refused."""
    if subprocess.run([*LOOPBACK_ONLY, "true"], capture_output=True).returncode == 0:
        return LOOPBACK_ONLY
    warnings.warn("no network namespace here (unshare refused): the demo ran with the network", stacklevel=2)
    return []


def test_demo_runs_ingestion_and_fine_tuning_from_the_start_dag_asset_events(tmp_path: Path) -> None:
    from genai_pipeline.config import Settings
    from genai_pipeline.local.weaviate_server import binary_path, ensure_binary

    home, cache = tmp_path / "home", tmp_path / "cache"
    # A fresh model cache: the one-time ONNX export runs, and none of its warnings may reach the user.
    # (The weaviate-server binary is shared from the usual cache: building it again proves nothing here.)
    built = ensure_binary(Settings())
    fresh = binary_path(Settings(cache_dir=cache))
    fresh.parent.mkdir(parents=True)
    fresh.symlink_to(built)
    env = user_env(home, API_PORT=str(free_port()), PIPELINE_CACHE_DIR=str(cache))
    result = pipeline("demo", env=env, prefix=loopback_only())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # The demo's own run: a run the daily schedule starts meanwhile (the demo crossed its tick once) is another.
    run_key = re.search(r"Ingestion run (asset_triggered__\S+)", result.stdout).group(1)
    assert "ingested         8" in result.stdout
    assert "Warning" not in result.stdout + result.stderr and "Traceback" not in result.stderr
    store = Store(str(home / "store"))
    summary = store.read_json(ingest_store.report(run_key))
    assert summary["run_key"] == run_key and summary["chunks"] > 50
    # The same start run's example Assets carried the fine-tuning path through to a first champion.
    assert "Fine-tuning job ftjob-" in result.stdout and "decision         no_champion" in result.stdout
    champion = store.read_json("finetune/champion/current.json")
    assert champion["model"] in result.stdout and champion["scores"]["challenger"]["fact_coverage"] > 0
    # ... and the promotion wrote the posts with it, which the demo printed with their sources, and the quality
    # gate's count: what it published repeats no sentence, and every sentence cites a source of the post.
    assert f'model: "{champion["model"]}"' in result.stdout and "## Sources" in result.stdout
    assert "posts passed the quality gate" in result.stderr or "no post passed the quality gate" in result.stderr
    for written in (home / "store" / "posts").glob("*.md"):
        text = written.read_text()
        front = front_matter(text)
        assert front["status"] in ("published", "needs_review") and front["quality"]["sentences"] >= 0
        body = text.split("---\n", 2)[2].split("## Sources")[0]
        sentences = split_sentences(body)
        assert len({" ".join(s.lower().split()) for s in sentences}) == len(sentences), written.name
        assert all(re.search(r"\[[1-9]\d*\]", s) for s in sentences), written.name

    # The README's next step, as typed in the checkout after `make demo` (no PIPELINE_HOME: the CLI finds the
    # checkout's .pipeline/): the champion writes from real chunks; a bad topic is refused.
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "pyproject.toml").write_text('[project]\nname = "genai-content-pipeline"\n')
    (checkout / ".pipeline").symlink_to(home)
    in_checkout = {k: v for k, v in env.items() if k != "PIPELINE_HOME"}
    generate = [sys.executable, "-m", "genai_pipeline.cli", "generate"]
    post = subprocess.run(
        [*generate, "Running the pipeline offline", "--k", "3"],
        env=in_checkout,
        cwd=checkout,
        capture_output=True,
        text=True,
    )
    assert post.returncode == 0, post.stderr[-3000:]
    assert f"-- {champion['model']} (champion)" in post.stdout and "[1] " in post.stdout
    empty = subprocess.run([*generate, "   "], env=env, capture_output=True, text=True)
    assert empty.returncode == 1 and "the topic is empty" in empty.stderr

    # OpenLineage: every step task's event, captured by the file transport, holds the whole dataset graph.
    graph = LineageGraph.from_folder(home / "lineage")
    jobs = {run.step for run in graph.runs}
    assert {"chunk", "embed", "load", "format_examples", "submit_fine_tune", "fine_tune_results"} <= jobs
    assert {"promote_challenger", "generate_post", "evaluate_examples", "combine_examples"} <= jobs
    shipped = {str(p) for p in (SAMPLE.parent / "examples").rglob("*") if p.is_file()}
    kb = graph.trace(graph.resolve("KnowledgeBase")).sources["documents"]  # documents → collection
    assert len(kb) == 8 and all(d.startswith("package://genai_pipeline/sample_kb/") for d in kb)
    trained = graph.trace(graph.resolve(champion["model"]))  # examples → JSONL → job → model
    assert set(trained.sources["examples"]) <= shipped and len(trained.sources["examples"]) >= 4
    assert set(trained.sources["examples"]) == {
        str(SAMPLE.parent / "examples" / e["file"])
        for e in store.read_json(layout.lineage(champion["model"]))["examples"]
    }
    promoted = graph.trace(graph.resolve(store.path(layout.CHAMPION)))  # model → champion
    assert promoted.steps[0].step == "promote_challenger" and promoted.sources == trained.sources
    posts = [k for k in graph.writers if k[1].endswith(".md") and "/posts/" in k[1]]
    assert posts, "no generated post in the events"
    post = graph.trace(posts[0])  # documents → collection → post, and the examples behind its model
    assert post.knowledge_bases and set(post.sources["documents"]) <= set(kb)
    assert post.sources["examples"] == trained.sources["examples"]
    answer = subprocess.run(
        [sys.executable, "-m", "genai_pipeline.cli", "lineage", posts[0][1]], env=env, capture_output=True, text=True
    )
    assert answer.returncode == 0 and post.sources["documents"][0] in answer.stdout, answer.stderr[-2000:]
    assert not list((home / "run").glob("*.pid")) and not leftovers(home)  # everything it started is stopped
