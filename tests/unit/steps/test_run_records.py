"""Ingestion run records: kept for the newest runs (so their batches can be cleared), dropped after."""

from __future__ import annotations

from pathlib import Path

from genai_pipeline.steps.ingest import remove_old_records
from genai_pipeline.steps.ingest_store import RUN_RECORDS, RunPlan, RunRecord
from genai_pipeline.store import Store


def plan_started(at: float) -> RunPlan:
    empty: dict = {name: [] for name in ("decoded", "rejected", "aliases", "hidden", "hard_links", "removed")}
    return RunPlan(
        started_at=at,
        plan_seconds=0.1,
        dry_run=False,
        sources={"kb": "/kb"},
        documents=0,
        changed=0,
        unchanged=0,
        prune_refused=[],
        unconfigured_sources={},
        stale=[],
        unavailable_sources=[],
        batches=0,
        model="local:all-MiniLM-L6-v2",
        **empty,
    )


def test_only_the_newest_records_are_kept_by_their_plan_start(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "store"))
    # Run keys sort the other way round from their start times, as manual and scheduled run ids can.
    for n, key in enumerate(["z_first", "m_second", "a_third", "b_fourth"]):
        RunRecord(store, key).write_plan(plan_started(1000.0 + n))
        store.write_json(f"{RUN_RECORDS}/{key}/results/00000.json", {"batch": 0})
    store.write_json(f"{RUN_RECORDS}/died_before_planning/batches/00000.json", [])  # no plan: oldest

    remove_old_records(store, keep=2)

    assert store.keys(RUN_RECORDS) == ["a_third", "b_fourth"]
    assert store.exists(f"{RUN_RECORDS}/b_fourth/results/00000.json")
