"""Where the fine-tuning path keeps its files in the shared store, in one place.

Datasets and models are content-addressed or named by job, so a rerun overwrites with the same bytes and
lineage can point at any of them long after newer ones exist.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from genai_pipeline.steps.keys import safe_name

if TYPE_CHECKING:
    from genai_pipeline.store import Store

ROOT = "finetune"
SPLITS = ("train", "validation")
# A dataset's key, the first 16 hex digits of its files' hashes: a run's Param may name one, and nothing else
# (it becomes a store path, so "../" must never pass).
DATASET_KEY_PATTERN = "^([0-9a-f]{16})?$"


def sha256(data: bytes) -> str:
    """Hex SHA-256 of some bytes: the content hash every manifest records."""
    return hashlib.sha256(data).hexdigest()


def formatted(split: str, group: str, suffix: str = ".jsonl") -> str:
    """Formatted examples of one group (``.jsonl``) or their manifest (``.manifest.json``)."""
    return f"{ROOT}/formatted/{split}/{group}{suffix}"


def format_run(run_key: str) -> str:
    """The group labels one formatting run planned."""
    return f"{ROOT}/formatted/runs/{run_key}.json"


# The groups of the last complete formatting run: what the gate reads.
FORMATTED_INDEX = f"{ROOT}/formatted/index.json"


GATE_FOLDER = f"{ROOT}/gate"


def gate_run(run_key: str, name: str) -> str:
    """Files the cost gate writes for one run (valid lines, its report) before anything is published."""
    return f"{GATE_FOLDER}/{run_key}/{name}"


def dataset(key: str, name: str) -> str:
    """A published dataset's ``train.jsonl``, ``validation.jsonl`` or ``manifest.json``."""
    return f"{ROOT}/datasets/{key}/{name}"


LATEST_DATASET = f"{ROOT}/datasets/latest.json"


def job_record(key: str) -> str:
    """The job a submission key created (the idempotency record)."""
    return f"{ROOT}/jobs/{key}.json"


def model_file(job_id: str, name: str) -> str:
    """A fine-tuned model's ``metrics.json`` or ``loss.png``."""
    return f"{ROOT}/models/{safe_name(job_id)}/{name}"


def lineage(model: str) -> str:
    """The lineage manifest of one fine-tuned model."""
    return f"{ROOT}/lineage/{safe_name(model)}.json"


LINEAGE_FOLDER = f"{ROOT}/lineage"
LATEST_CHALLENGER = f"{ROOT}/challenger.json"
CHAMPION = f"{ROOT}/champion/current.json"
CHAMPION_HISTORY = f"{ROOT}/champion/history"


def champion_model(store: Store) -> str | None:
    """The model the current champion record names; None before the first promotion."""
    return store.read_json(CHAMPION)["model"] if store.exists(CHAMPION) else None


def decision(run_key: str) -> str:
    """The scores and decision of one champion/challenger run."""
    return f"{ROOT}/decisions/{run_key}.json"
