"""`pipeline lineage MODEL_ID`: which documents trained a model, from its stored manifest (events: test_lineage)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from genai_pipeline.cli import main
from genai_pipeline.config import get_settings
from genai_pipeline.steps import finetune_store as layout
from genai_pipeline.steps.keys import safe_name
from genai_pipeline.store import Store

MODEL = "ft:SmolLM2-135M-Instruct:genai-pipeline:abc123"
MANIFEST = {
    "model": MODEL,
    "job_id": "ftjob-abc123",
    "base_model": "SmolLM2-135M-Instruct",
    "hyperparameters": {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 2.0},
    "submission_key": "k" * 32,
    "dataset": {
        "key": "d" * 16,
        "train_sha256": "a" * 64,
        "validation_sha256": "b" * 64,
        "train_examples": 2,
        "validation_examples": 1,
    },
    "examples": [
        {"split": "train", "file": "train/short/port.txt", "sha256": "1" * 64, "examples": 1},
        {"split": "train", "file": "train/long/dag.txt", "sha256": "2" * 64, "examples": 1},
        {"split": "validation", "file": "validation/short/ports.txt", "sha256": "3" * 64, "examples": 1},
    ],
    "runs": {
        "format_examples": "manual__1",
        "evaluate_examples": "asset_triggered__2",
        "fine_tune": "asset_triggered__3",
    },
}


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv("PIPELINE_STORE_URI", str(tmp_path / "store"))
    get_settings.cache_clear()
    store = Store(str(tmp_path / "store"))
    store.write_json(layout.lineage(MODEL), MANIFEST)
    yield store
    get_settings.cache_clear()


def test_lineage_lists_the_documents_that_trained_the_model(store: Store, capsys: pytest.CaptureFixture) -> None:
    assert main(["lineage", MODEL]) == 0
    out = capsys.readouterr().out
    for example in MANIFEST["examples"]:
        assert f"{example['file']}  sha256 {example['sha256']}" in out
    assert "ftjob-abc123" in out and "n_epochs=3" in out and "fine_tune asset_triggered__3" in out


def test_lineage_by_job_id_and_as_json(store: Store, capsys: pytest.CaptureFixture) -> None:
    assert main(["lineage", "ftjob-abc123", "--json"]) == 0
    # No events captured here: the manifest alone answers, and the JSON says the events part is empty.
    assert json.loads(capsys.readouterr().out) == {"manifest": MANIFEST, "events": None}


def test_an_unknown_model_names_the_ones_there_are(store: Store, capsys: pytest.CaptureFixture) -> None:
    assert main(["lineage", "ft:other"]) == 1
    err = capsys.readouterr().err
    assert "no lineage for 'ft:other'" in err and safe_name(MODEL) in err
