"""Where an ingestion run keeps its files in the shared store, in one place (as ``finetune_store`` does).

A run's bulk files (chunks, vectors) are temporary and removed by its ``cleanup`` teardown; its record (plan,
batch manifests, per-batch results) is small and kept, so a cleared task can re-run; its report stays.
"""

from __future__ import annotations

from genai_pipeline.steps.keys import safe_name

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
