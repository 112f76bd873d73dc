"""The fine-tune submission's idempotency key, and finding a model's lineage by model or job id."""

from __future__ import annotations

from pathlib import Path

import pytest

from genai_pipeline.steps import finetune_store as layout
from genai_pipeline.steps.finetune import read_lineage, submission_key
from genai_pipeline.store import Store

TRAIN, VALIDATION = "a" * 64, "b" * 64
HYPER = {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 2.0}


def key(**changes) -> str:
    args = {
        "train_sha256": TRAIN,
        "validation_sha256": VALIDATION,
        "base_model": "gpt-4o-mini",
        "hyperparameters": HYPER,
    }
    return submission_key(**(args | changes))


def test_the_key_is_stable_and_ignores_dict_order() -> None:
    reordered = {"learning_rate_multiplier": 2.0, "batch_size": 1, "n_epochs": 3}
    assert key() == key() == key(hyperparameters=reordered)
    assert len(key()) == 32 and int(key(), 16) >= 0


@pytest.mark.parametrize(
    "changes",
    [
        {"train_sha256": "c" * 64},
        {"validation_sha256": "c" * 64},
        {"base_model": "gpt-4o-mini-2024-07-18"},
        {"hyperparameters": HYPER | {"n_epochs": 4}},
        {"hyperparameters": HYPER | {"batch_size": 2}},
        {"hyperparameters": HYPER | {"learning_rate_multiplier": 1.5}},
        # The two files swapped are another submission.
        {"train_sha256": VALIDATION, "validation_sha256": TRAIN},
    ],
    ids=["train", "validation", "base_model", "n_epochs", "batch_size", "learning_rate", "swapped"],
)
def test_the_key_changes_with_each_input(changes: dict) -> None:
    assert key(**changes) != key()


def lineage(model: str, job_id: str) -> dict:
    return {"model": model, "job_id": job_id, "dataset": {"key": "d1"}}


def test_read_lineage_by_model_or_job_id(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "store"))
    with pytest.raises(KeyError, match="models with lineage: none yet"):
        read_lineage(store, "ft:nothing")
    first, second = lineage("ft:gpt-4o-mini:pipeline:abc", "ftjob-1"), lineage("ft:base:x:def", "ftjob-2")
    store.write_json(layout.lineage(first["model"]), first)
    store.write_json(layout.lineage(second["model"]), second)
    assert read_lineage(store, "ft:gpt-4o-mini:pipeline:abc") == first
    assert read_lineage(store, "ftjob-2") == second
    with pytest.raises(KeyError, match="ft_base_x_def, ft_gpt-4o-mini_pipeline_abc") as error:
        read_lineage(store, "ftjob-3")
    assert "'ftjob-3'" in str(error.value)
