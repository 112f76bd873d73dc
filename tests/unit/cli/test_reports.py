"""What `pipeline ingest` and `pipeline generate` print, from a run's report and a post, without any service."""

from __future__ import annotations

import pytest

from genai_pipeline.cli.reports import print_post, print_summary
from genai_pipeline.steps.contracts import Summary

REPORT = Summary(
    run_key="manual__1",
    collection="KnowledgeBase",
    model="all-MiniLM-L6-v2",
    dry_run=False,
    documents=10,
    ingested=7,
    to_ingest=7,
    skipped_unchanged=1,
    rejected=[{"uri": "kb/blob.bin", "reason": "binary content"}],
    decoded=[{"uri": "kb/NEWS", "encoding": "latin-1"}],
    symlinks_skipped=0,
    hidden_skipped=[".git/"],
    hard_links=["kb/linked.md"],
    unavailable_sources=[
        {"source": "grab", "reason": "refused: /etc is not under an allowed root", "kept_documents": 0}
    ],
    unconfigured_sources={"old": 3},
    stale=["kb/was-fine.md"],
    removed=[],
    prune_refused=[],
    prune_skipped=None,
    removed_documents=0,
    removed_chunks=0,
    batches=2,
    failed_batches=[],
    chunks=40,
    stale_chunks_deleted=0,
    embed_calls=2,
    embed_seconds=1.5,
    step_seconds={"plan": 0.4, "embed": 1.5},
    longest_batch_seconds=1.0,
    mean_batch_seconds=0.8,
    seconds=3.0,
    docs_per_s=3.3,
    chunks_per_s=13.3,
    totals={},
).model_dump()


def test_an_ingestion_summary_names_each_problem_and_its_reason(capsys: pytest.CaptureFixture[str]) -> None:
    print_summary(REPORT)
    out = capsys.readouterr().out
    for line in (
        "ingested         7  (2 batches)",
        "UNAVAILABLE      grab: refused: /etc is not under an allowed root (0 stored documents kept)",
        "not configured   old: 3 stored documents kept",
        "decoded          kb/NEWS from latin-1",
        "hard link        kb/linked.md",
        "! kb/was-fine.md: stale: previous version kept",
        "- kb/blob.bin: binary content",
        "time by step     plan 0.4 s, embed 1.5 s",
    ):
        assert line in out, line


def test_a_run_that_ended_before_its_report_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    print_summary({"run_key": "manual__2", "state": "failed"})
    assert capsys.readouterr().out.strip() == "Ingestion run manual__2 ended failed before its report"


def test_a_post_is_printed_with_the_gates_verdict_and_its_sources(capsys: pytest.CaptureFixture[str]) -> None:
    print_post(
        {
            "post": "Django's `select_related` follows foreign keys in one query [1].",
            "status": "needs_review",
            "quality": {
                "reasons": ["67% of sentences supported, under 90%"],
                "supported_share": 0.67,
                "sentences": 3,
                "repetitions_removed": 1,
                "uncited_removed": 0,
                "citations_repaired": 2,
            },
            "model": "ft:x",
            "model_role": "champion",
            "template": "rag-v1",
            "usage": {"prompt_tokens": 900, "completion_tokens": 80},
            "seconds": 12.5,
            "sources": [
                {
                    "n": 1,
                    "title": "QuerySet API",
                    "section": "select_related",
                    "uri": "d/q.txt",
                    "chunk_index": 4,
                    "distance": 0.41,
                }
            ],
        }
    )
    out = capsys.readouterr().out
    assert "-- quality gate: needs_review: 67% of sentences supported, under 90% (67% of 3 sentences supported" in out
    assert "1 repetitions and 0 uncited sentences removed, 2 citations repaired" in out
    assert "[1] QuerySet API / select_related  d/q.txt chunk 4 (distance 0.41)" in out
