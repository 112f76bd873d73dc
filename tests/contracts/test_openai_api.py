"""The OpenAI-compatible API as the steps use it, held by the local model server and the in-memory one.

Only the calls the steps make: files (upload, list, content), fine-tuning jobs (create with metadata, retrieve,
list) and chat completions. What the in-memory API passes here, the model server does too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes import InMemoryOpenAI

BASE = "SmolLM2-135M-Instruct"
LIVE = {"validating_files", "queued", "running", "succeeded"}


@pytest.fixture(scope="module", params=["memory", pytest.param("model-server", marks=pytest.mark.integration)])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if request.param == "memory":
        yield InMemoryOpenAI()
        return
    from conftest import environ, free_port
    from genai_pipeline.clients.openai_compat import make_openai_client
    from genai_pipeline.config import Settings
    from genai_pipeline.local.model_server import start_model_server
    from genai_pipeline.local.services import Services

    home = tmp_path_factory.mktemp("contract-model-server")
    port = str(free_port())
    env = {
        "PIPELINE_HOME": str(home),
        "PIPELINE_MODEL_SERVER__PORT": port,
        "PIPELINE_OPENAI__BASE_URL": f"http://127.0.0.1:{port}/v1",
    }
    services = Services(home)
    with environ(env):
        settings = Settings()
        start_model_server(settings, services, env)
        client = make_openai_client(settings)
    try:
        yield client
    finally:
        for job in client.fine_tuning.jobs.list(limit=100).data:
            if job.status in {"validating_files", "queued", "running"}:
                client.fine_tuning.jobs.cancel(job.id)
        services.stop("model-server")


def chat_jsonl(answer: str) -> bytes:
    line = {"messages": [{"role": "user", "content": "Which port?"}, {"role": "assistant", "content": answer}]}
    return (json.dumps(line) + "\n").encode() * 4


def test_an_uploaded_file_is_listed_with_its_name_and_size_and_reads_back(api: Any, tmp_path: Path) -> None:
    data = chat_jsonl(f"Port {tmp_path.name}.")
    created = api.files.create(file=(f"{tmp_path.name}.jsonl", data), purpose="fine-tune")
    assert (created.filename, created.bytes) == (f"{tmp_path.name}.jsonl", len(data))
    listed = {f.id: f for f in api.files.list(purpose="fine-tune")}
    assert listed[created.id].filename == created.filename and listed[created.id].bytes == len(data)
    assert api.files.content(created.id).read() == data


def test_a_job_keeps_its_metadata_and_is_found_by_retrieve_and_list(api: Any) -> None:
    train = api.files.create(file=("t.jsonl", chat_jsonl("Port 8088.")), purpose="fine-tune").id
    valid = api.files.create(file=("v.jsonl", chat_jsonl("Port 8080.")), purpose="fine-tune").id
    job = api.with_options(max_retries=0).fine_tuning.jobs.create(
        model=BASE,
        training_file=train,
        validation_file=valid,
        suffix="contract",
        seed=7,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 1}}},
        metadata={"pipeline_key": "k-contract", "dataset": "d1"},
    )
    assert job.status in LIVE and job.id
    again = api.fine_tuning.jobs.retrieve(job.id)
    assert again.id == job.id and again.metadata == {"pipeline_key": "k-contract", "dataset": "d1"}
    listed = [j for j in api.fine_tuning.jobs.list(limit=100).data if j.id == job.id]
    assert len(listed) == 1 and listed[0].metadata["pipeline_key"] == "k-contract"


def test_a_chat_completion_has_one_text_choice_and_counted_usage(api: Any) -> None:
    reply = api.chat.completions.create(
        model=BASE,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}],
        temperature=0,
        max_tokens=8,
    )
    assert len(reply.choices) == 1 and isinstance(reply.choices[0].message.content, str)
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
