"""Where an ingestion run keeps its files in the shared store, in one place (as ``finetune_store`` does).

A run's bulk files (chunks, vectors) are temporary and removed by its ``cleanup`` teardown; its record (plan,
batch manifests, per-batch results) is small and kept, so a cleared task can re-run; its report stays.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from genai_pipeline.steps.contracts import Loaded, Pruned, RunReport
from genai_pipeline.steps.keys import safe_name
from genai_pipeline.steps.planning import BatchEntry
from genai_pipeline.store import Store

BULK_ROOT = "ingest"
RUN_RECORDS = "runs/ingest"
REPORTS = "reports/ingest"
LATEST_REPORT = f"{REPORTS}/latest.json"
# A batch's bulk folders; its other files (``batches``, ``late``, ``results``) belong to the run's record.
BULK = frozenset({"chunks", "vectors"})


def run_key_for(run_id: str) -> str:
    """The run's key in the store: its Airflow run id made safe as a folder name."""
    return safe_name(run_id)


def bulk(run_key: str, *parts: str) -> str:
    """The run's bulk files (chunks, vectors), or one of them."""
    return "/".join([BULK_ROOT, run_key, *parts])


def record(run_key: str, *parts: str) -> str:
    """The run's record, or one file of it."""
    return "/".join([RUN_RECORDS, run_key, *parts])


def plan(run_key: str) -> str:
    """The run's plan: its sources, documents, removals and batch count."""
    return record(run_key, "plan.json")


def batch(run_key: str, folder: str, index: int, suffix: str = "") -> str:
    """A batch's file (or, without a suffix, its folder) in the run's bulk files or its record."""
    where = bulk if folder in BULK else record
    return where(run_key, folder, f"{index:05d}{suffix}")


def report(run_key: str) -> str:
    """The run's summary, every list whole."""
    return f"{REPORTS}/{run_key}.json"


class RunPlan(BaseModel):
    """What ``plan`` found and decided, read by every later step of the run and by its report."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    started_at: float
    plan_seconds: float
    dry_run: bool
    sources: dict[str, str]
    documents: int
    changed: int
    unchanged: int
    # Documents decoded from a legacy encoding, and each one's encoding.
    decoded: list[dict[str, str]]
    rejected: list[dict[str, str]]
    aliases: list[str]
    hidden: list[str]
    hard_links: list[str]
    removed: list[str]
    prune_refused: list[dict[str, Any]]
    unconfigured_sources: dict[str, int]
    stale: list[str]
    unavailable_sources: list[dict[str, Any]]
    batches: int
    model: str


class RunRecord:
    """One run's typed files in the store: its plan, batch manifests, late rejections, results, prune."""

    def __init__(self, store: Store, run_key: str) -> None:
        self.store, self.run_key = store, run_key

    def has_plan(self) -> bool:
        """Whether ``plan`` finished."""
        return self.store.exists(plan(self.run_key))

    def plan(self) -> RunPlan:
        """The run's plan."""
        return RunPlan.model_validate(self.store.read_json(plan(self.run_key)))

    def write_plan(self, value: RunPlan) -> None:
        """Record the plan (a re-run of ``plan`` replaces it)."""
        self.store.write_json(plan(self.run_key), value.model_dump())

    def manifest(self, index: int) -> list[BatchEntry]:
        """The documents (or parts) of one batch."""
        return [BatchEntry(**entry) for entry in self.store.read_json(batch(self.run_key, "batches", index, ".json"))]

    def write_manifest(self, index: int, entries: list[BatchEntry]) -> None:
        """Record one batch's documents."""
        self.store.write_json(batch(self.run_key, "batches", index, ".json"), [e.to_dict() for e in entries])

    def late(self) -> list[dict[str, str]]:
        """Documents the chunk step refused (changed or gone since planning), over every batch."""
        folder = record(self.run_key, "late")
        return [r for key in self.store.keys(folder) for r in self.store.read_json(f"{folder}/{key}")]

    def write_late(self, index: int, rejected: list[dict[str, str]]) -> None:
        """Record the documents one batch's chunk step refused."""
        self.store.write_json(batch(self.run_key, "late", index, ".json"), rejected)

    def results(self) -> list[Loaded]:
        """Every loaded batch's result."""
        folder = record(self.run_key, "results")
        return [Loaded.model_validate(self.store.read_json(f"{folder}/{key}")) for key in self.store.keys(folder)]

    def loaded_batches(self) -> int:
        """How many batches have loaded."""
        return len(self.store.keys(record(self.run_key, "results")))

    def write_result(self, result: Loaded) -> None:
        """Record a batch as loaded."""
        self.store.write_json(batch(self.run_key, "results", result.batch, ".json"), result.model_dump())

    def pruned(self) -> Pruned:
        """What ``prune`` did, or that it did not run."""
        key = record(self.run_key, "pruned.json")
        if not self.store.exists(key):
            return Pruned(skipped="prune did not run")
        return Pruned.model_validate(self.store.read_json(key))

    def write_pruned(self, value: Pruned) -> None:
        """Record what ``prune`` did."""
        self.store.write_json(record(self.run_key, "pruned.json"), value.model_dump())

    def write_report(self, value: RunReport) -> None:
        """Store the report as the run's and as the latest."""
        self.store.write_json(report(self.run_key), value.model_dump())
        self.store.write_json(LATEST_REPORT, value.model_dump())
