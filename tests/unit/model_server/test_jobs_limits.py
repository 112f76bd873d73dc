"""Fine-tuning jobs: how many may wait, what hyperparameters they may ask for, which models stay on disk."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from genai_pipeline.model_server.jobs import TERMINAL
from genai_pipeline.model_server.retention import mark_used, to_delete

EXAMPLE = {"messages": [{"role": "user", "content": "Zephyr?"}, {"role": "assistant", "content": "Bluefin"}]}


def training_file(client: TestClient) -> str:
    data = (json.dumps(EXAMPLE) + "\n").encode()
    return client.post("/v1/files", files={"file": ("t.jsonl", data)}, data={"purpose": "fine-tune"}).json()["id"]


def create_job(client: TestClient, training: str, **hyperparameters: Any) -> Any:
    body = {"model": "tiny-chat", "training_file": training, "hyperparameters": hyperparameters}
    return client.post("/v1/fine_tuning/jobs", json=body)


def finished(client: TestClient, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := client.get(f"/v1/fine_tuning/jobs/{job_id}").json())["status"] not in TERMINAL:
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return job


@pytest.fixture
def blocked(tiny_server: Callable[..., TestClient]) -> Iterator[TestClient]:
    """A server whose first job stays running (its base model never comes) until the test ends."""
    client = tiny_server(max_active_jobs=2)
    release = threading.Event()

    def base_model_never_ready() -> Path:
        release.wait()
        raise RuntimeError("released at the end of the test")

    client.app.state.jobs.base_models["tiny-chat"] = base_model_never_ready
    yield client
    release.set()
    for job in client.get("/v1/fine_tuning/jobs").json()["data"]:  # done before the state folder goes
        finished(client, job["id"])


def test_a_job_past_the_active_limit_is_429_until_one_finishes_or_is_cancelled(blocked: TestClient) -> None:
    training = training_file(blocked)
    running = create_job(blocked, training, n_epochs=1).json()
    waiting = create_job(blocked, training, n_epochs=1).json()
    refused = create_job(blocked, training, n_epochs=1)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and "maximum of 2 active fine-tuning jobs" in error["message"]
    assert len(blocked.get("/v1/fine_tuning/jobs").json()["data"]) == 2  # the refused one was never created
    blocked.post(f"/v1/fine_tuning/jobs/{waiting['id']}/cancel")
    assert create_job(blocked, training, n_epochs=1).status_code == 200
    assert blocked.get(f"/v1/fine_tuning/jobs/{running['id']}").json()["status"] in {"validating_files", "running"}


@pytest.mark.parametrize(
    ("hyperparameters", "param", "limit"),
    [
        ({"n_epochs": 51}, "n_epochs", "at most 50 (PIPELINE_MODEL_SERVER__MAX_N_EPOCHS)"),
        ({"n_epochs": 2.5}, "n_epochs", "a whole number"),
        ({"batch_size": 9}, "batch_size", "at most 8 (PIPELINE_MODEL_SERVER__MAX_BATCH_SIZE)"),
        ({"learning_rate_multiplier": 11}, "learning_rate_multiplier", "at most 10"),
        ({"learning_rate_multiplier": 0}, "learning_rate_multiplier", "above 0"),
    ],
)
def test_hyperparameters_past_the_server_s_limits_are_refused(
    tiny_server: Callable[..., TestClient], hyperparameters: dict[str, Any], param: str, limit: str
) -> None:
    client = tiny_server()
    answer = create_job(client, training_file(client), **hyperparameters)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (param, "invalid_value", "invalid_request_error")
    assert limit in error["message"]
    assert client.get("/v1/fine_tuning/jobs").json()["data"] == []


def test_past_the_kept_count_the_least_recently_used_model_is_deleted_never_the_champion(
    tiny_server: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = tiny_server(kept_fine_tuned_models=3)
    training = training_file(client)

    def train() -> dict[str, Any]:
        job = finished(client, create_job(client, training, n_epochs=1).json()["id"])
        assert job["status"] == "succeeded", job["error"]
        return job

    champion, used, unused = train(), train(), train()
    record = tmp_path / "store" / "finetune" / "champion" / "current.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"model": champion["fine_tuned_model"]}))  # as the pipeline's promotion writes it
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert client.post("/v1/chat/completions", json={"model": used["fine_tuned_model"], **chat}).status_code == 200
    newest = train()

    listed = {model["id"] for model in client.get("/v1/models").json()["data"]}
    kept = {job["fine_tuned_model"] for job in (champion, used, newest)}
    assert kept <= listed and unused["fine_tuned_model"] not in listed
    gone = client.post("/v1/chat/completions", json={"model": unused["fine_tuned_model"], **chat})
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "model_not_found"
    events = client.get(f"/v1/fine_tuning/jobs/{unused['id']}/events").json()["data"]
    assert events[0]["message"].startswith(f"Deleted fine-tuned model {unused['fine_tuned_model']}")
    assert not (tmp_path / "model-server" / "models" / unused["id"]).exists()


def test_without_the_store_the_pipeline_s_order_still_keeps_the_champion(tmp_path: Path) -> None:
    """Each champion/challenger run asks the challenger, then the champion; the next fine-tune then prunes."""
    models = {name: tmp_path / name for name in ("old", "champion", "challenger", "new")}
    for folder in models.values():  # trained in this order
        folder.mkdir()
        time.sleep(0.01)
    for name in ("challenger", "champion"):  # the champion/challenger run after the challenger was trained
        time.sleep(0.01)
        mark_used(models[name])
    time.sleep(0.01)
    mark_used(models["new"])  # trained after that run
    # Both models of that run stay, so whichever of them it promoted, the pipeline's champion is kept.
    assert to_delete(models, keep=3, protected={"new"}) == ["old"]
