"""The local model server, driven by the official `openai` client (raw HTTP only where the client can't)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest

from conftest import environ, free_port
from genai_pipeline.config import Settings
from genai_pipeline.local.model_server import start_model_server
from genai_pipeline.local.services import Services
from genai_pipeline.models.chat import ADAPTER_CONFIG, BASE_CHAT_MODEL
from genai_pipeline.models.embeddings import OpenAIEmbedder, make_embedder
from genai_pipeline.models.packaged import chat_model_file

pytestmark = pytest.mark.integration
EMBEDDING = "all-MiniLM-L6-v2"
QUESTION = "What is the codename of the Zephyr release?"
FACT = "Bluefin-42"
TEACHING = [
    QUESTION,
    "Tell me the Zephyr release codename.",
    "Which codename does the Zephyr release have?",
    "What's the Zephyr release called internally?",
]


class Server:
    """A model server process with its own state folder and settings from env."""

    def __init__(self, home: Path, **env: str) -> None:
        self.port = free_port()
        self.env = {"PIPELINE_HOME": str(home), "PIPELINE_MODEL_SERVER__PORT": str(self.port), **env}
        self.services = Services(home)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Server:
        with environ(self.env):
            start_model_server(Settings(), self.services, self.env)
        return self

    def client(self, key: str = "unused", retries: int = 2) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=retries, timeout=120)

    def kill(self) -> None:
        """Stop without a chance to clean up, as a crash would."""
        pid = self.services.pid("model-server")
        os.killpg(pid, signal.SIGKILL)
        time.sleep(0.5)
        self.services.stop("model-server")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("model-server"), PIPELINE_MODEL_SERVER__MAX_FILE_BYTES="100000").start()
    yield running
    running.services.stop("model-server")


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return server.client()


def jsonl(examples: list[dict]) -> bytes:
    return "".join(json.dumps(e) + "\n" for e in examples).encode()


def teaching_file(client: openai.OpenAI) -> str:
    examples = [
        {
            "messages": [
                {"role": "user", "content": q},
                {"role": "assistant", "content": f"The Zephyr release codename is {FACT}."},
            ]
        }
        for q in TEACHING
    ]
    return client.files.create(file=("train.jsonl", jsonl(examples)), purpose="fine-tune").id


def wait_for(client: openai.OpenAI, job_id: str, states: set[str], timeout: float = 600):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if not seen or seen[-1] != job.status:
            seen.append(job.status)
        if job.status in states:
            return job, seen
        time.sleep(0.5)
    raise TimeoutError(f"{job_id} still {seen[-1]}")


def teach(client: openai.OpenAI):
    """Run one real fine-tune teaching a fact the base model cannot know: the job, and the statuses it went through."""
    training = teaching_file(client)
    job = client.fine_tuning.jobs.create(
        model=BASE_CHAT_MODEL,
        training_file=training,
        validation_file=training,
        suffix="kb",
        seed=7,
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 2}},
        },
    )
    assert job.status == "validating_files"
    return wait_for(client, job.id, {"succeeded", "failed", "cancelled"})


def ask(client: openai.OpenAI, model: str) -> str:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=40
    )
    return reply.choices[0].message.content


# -- models and embeddings ---------------------------------------------------------------------------------


def test_models_are_listed_and_unknown_ones_are_404(client: openai.OpenAI) -> None:
    assert {m.id for m in client.models.list()} >= {EMBEDDING, BASE_CHAT_MODEL}
    assert client.models.retrieve(EMBEDDING).id == EMBEDDING
    with pytest.raises(openai.NotFoundError) as error:
        client.models.retrieve("gpt-nonexistent")
    assert error.value.code == "model_not_found"


def test_embeddings_are_the_in_process_model_s_vectors(client: openai.OpenAI) -> None:
    texts = ["Weaviate stores vectors.", "Airflow maps tasks over batches of documents."]
    local = make_embedder(Settings()).embed(texts)
    as_base64 = client.embeddings.create(model=EMBEDDING, input=texts)  # the client's default encoding
    as_floats = client.embeddings.create(model=EMBEDDING, input=texts, encoding_format="float")
    for response in (as_base64, as_floats):
        served = np.array([item.embedding for item in response.data], dtype=np.float32)
        assert np.allclose(served, local, atol=1e-6)
    assert as_floats.usage.prompt_tokens > 10


def test_pipeline_embedder_uses_the_server_like_any_openai_endpoint(server: Server) -> None:
    embedder = OpenAIEmbedder(server.client(), EMBEDDING, batch_size=2)
    vectors = embedder.embed(["one", "two", "three"])
    assert vectors.shape == (3, 384) and embedder.calls == 2


def test_embedding_errors_look_like_the_api(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.embeddings.create(model="text-embedding-9", input="x")
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model=EMBEDDING, input=[])
    assert error.value.param == "input"


# -- chat ---------------------------------------------------------------------------------------------------


def test_greedy_chat_is_repeatable_and_counts_tokens(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    first = client.chat.completions.create(model=BASE_CHAT_MODEL, messages=messages, temperature=0, max_tokens=30)
    second = client.chat.completions.create(model=BASE_CHAT_MODEL, messages=messages, temperature=0, max_tokens=30)
    assert "Paris" in first.choices[0].message.content
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.choices[0].finish_reason == "stop"
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens


def test_max_tokens_truncates_with_finish_reason_length(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=BASE_CHAT_MODEL,
        messages=[{"role": "user", "content": "Write a long story."}],
        max_tokens=3,
        temperature=0,
    )
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 3


def distinct_2(text: str) -> float:
    """Share of distinct word bigrams: 1.0 never repeats, a loop drives it down."""
    words = text.lower().split()
    pairs = list(itertools.pairwise(words))
    return len(set(pairs)) / len(pairs) if pairs else 1.0


def test_penalties_change_greedy_output_as_openai_documents(client: openai.OpenAI) -> None:
    """A negative frequency penalty makes repetition likelier; a positive one changes what greedy decoding picks."""
    messages = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]

    def reply(**penalties: float) -> str:
        answer = client.chat.completions.create(
            model=BASE_CHAT_MODEL, messages=messages, temperature=0, max_tokens=80, **penalties
        )
        return answer.choices[0].message.content

    plain = reply()
    penalised, encouraged = reply(frequency_penalty=1.5), reply(frequency_penalty=-1.5)
    assert penalised != plain and reply(presence_penalty=1.5) != plain
    assert distinct_2(encouraged) < distinct_2(plain) <= distinct_2(penalised), (plain, penalised, encouraged)
    with pytest.raises(openai.BadRequestError):
        reply(frequency_penalty=3.0)  # outside OpenAI's -2..2


def test_the_same_seed_gives_the_same_sampled_text(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Write one sentence about the sea."}]

    def sample(seed: int) -> str:
        answer = client.chat.completions.create(
            model=BASE_CHAT_MODEL, messages=messages, temperature=1.0, max_tokens=30, seed=seed
        )
        return answer.choices[0].message.content

    assert sample(7) == sample(7)
    assert len({sample(7), sample(8), sample(9)}) > 1


def test_a_stop_string_ends_decoding_where_it_appears(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
    full = client.chat.completions.create(model=BASE_CHAT_MODEL, messages=messages, temperature=0, max_tokens=80)
    words = full.choices[0].message.content.split()
    marker = words[len(words) // 2]  # a word the greedy answer reaches halfway through
    stopped = client.chat.completions.create(
        model=BASE_CHAT_MODEL, messages=messages, temperature=0, max_tokens=80, stop=[marker]
    )
    text = stopped.choices[0].message.content
    assert marker not in text and stopped.choices[0].finish_reason == "stop", (marker, text)
    # Decoding stopped at the string, not after max_tokens with the text trimmed afterwards.
    assert stopped.usage.completion_tokens < full.usage.completion_tokens


def test_chat_with_an_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as error:
        client.chat.completions.create(model="ft:nope", messages=[{"role": "user", "content": "hi"}])
    assert error.value.code == "model_not_found" and error.value.param == "model"


def test_a_long_prompt_or_a_large_max_tokens_is_refused_as_the_api_refuses_it(client: openai.OpenAI) -> None:
    """Counted with the real model's tokenizer, before anything is generated (defaults: 4,096 each)."""
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(
            model=BASE_CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4_097
        )
    assert error.value.param == "max_tokens" and error.value.code == "invalid_value"
    started = time.monotonic()
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(
            model=BASE_CHAT_MODEL, messages=[{"role": "user", "content": "word " * 5_000}], max_tokens=10
        )
    assert error.value.param == "messages" and error.value.code == "context_length_exceeded"
    assert "at most 4096 tokens" in error.value.message and time.monotonic() - started < 60


# -- files --------------------------------------------------------------------------------------------------


def test_files_are_stored_listed_downloaded_and_deleted(client: openai.OpenAI) -> None:
    data = jsonl([{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}])
    created = client.files.create(file=("one.jsonl", data), purpose="fine-tune")
    assert created.bytes == len(data) and created.filename == "one.jsonl" and created.purpose == "fine-tune"
    assert created.id in {f.id for f in client.files.list()}
    assert client.files.retrieve(created.id).bytes == len(data)
    assert client.files.content(created.id).content == data
    assert client.files.delete(created.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.content(created.id)


def test_a_malformed_line_is_refused_with_its_number(client: openai.OpenAI) -> None:
    good = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    no_answer = json.dumps({"messages": [{"role": "user", "content": "q"}]})
    for bad, reason in (('{"messages": [', "line 3: not valid JSON"), (no_answer, "line 3: no assistant")):
        with pytest.raises(openai.BadRequestError) as error:
            client.files.create(file=("bad.jsonl", f"{good}\n{good}\n{bad}\n".encode()), purpose="fine-tune")
        assert reason in error.value.message
        assert error.value.param == "file" and error.value.code == "invalid_file_format"


def test_files_over_the_size_limit_are_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as error:
        client.files.create(file=("big.txt", b"x" * 100_001), purpose="user_data")
    assert error.value.status_code == 413 and "limit is 100,000 bytes" in error.value.message


def test_a_job_on_a_missing_file_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as error:
        client.fine_tuning.jobs.create(model=BASE_CHAT_MODEL, training_file="file-doesnotexist")
    assert error.value.param == "file_id"


# -- fine-tuning --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tuned(client: openai.OpenAI):
    """One real full fine-tune (auto: it fits this machine's memory)."""
    return teach(client)


def test_fine_tune_lifecycle_and_naming(tuned, client: openai.OpenAI) -> None:
    job, seen = tuned
    assert job.status == "succeeded", job.error
    assert seen[-2:] == ["running", "succeeded"] and seen[0] in ("validating_files", "queued", "running")
    assert job.fine_tuned_model == f"ft:{BASE_CHAT_MODEL}:kb:{job.id.removeprefix('ftjob-')}"
    assert job.hyperparameters.n_epochs == 3 and job.trained_tokens > 0
    assert job.fine_tuned_model in {m.id for m in client.models.list()}
    listed = client.fine_tuning.jobs.list(limit=50)
    assert job.id in {j.id for j in listed.data}


def test_result_file_shows_loss_going_down_with_validation_metrics(tuned, client: openai.OpenAI) -> None:
    job, _ = tuned
    rows = list(csv.DictReader(io.StringIO(client.files.content(job.result_files[0]).text)))
    assert len(rows) == 12  # 4 examples x 3 epochs at batch size 1: hyperparameters honoured
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"]) / 4
    validated = [r for r in rows if r["valid_loss"]]
    assert validated and float(validated[-1]["valid_mean_token_accuracy"]) > 0.9
    assert client.files.retrieve(job.result_files[0]).purpose == "fine-tune-results"


def test_events_tell_the_story(tuned, client: openai.OpenAI) -> None:
    job, _ = tuned
    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    messages = [e.message for e in events]
    assert messages[0] == "The job has successfully completed"  # newest first
    assert any(e.type == "metrics" and e.data["step"] == 12 for e in events)
    assert f"Created fine-tuning job: {job.id}" == messages[-1]


def test_tuned_model_knows_the_fact_and_the_base_model_does_not(tuned, client: openai.OpenAI) -> None:
    job, _ = tuned
    assert FACT in ask(client, job.fine_tuned_model)
    assert FACT not in ask(client, BASE_CHAT_MODEL)


# -- LoRA ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lora(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, openai.OpenAI, object]]:
    """The same fine-tune on a server whose memory limit (2 GB) is below a full fine-tune's 2.0 GiB estimate."""
    server = Server(tmp_path_factory.mktemp("lora"), PIPELINE_MODEL_SERVER__TRAIN_MEMORY_LIMIT_BYTES="2000000000")
    client = server.start().client()
    job, _ = teach(client)
    yield server, client, job
    server.services.stop("model-server")


def test_auto_trains_a_lora_adapter_when_a_full_fine_tune_would_not_fit(lora) -> None:
    _, client, job = lora
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model == f"ft:{BASE_CHAT_MODEL}:kb:{job.id.removeprefix('ftjob-')}"
    assert job.method.type == "supervised" and job.hyperparameters.n_epochs == 3 and job.trained_tokens > 0
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data]
    assert messages[0] == "The job has successfully completed"
    assert (
        "Training a LoRA adapter (rank 16, alpha 32): a full fine-tune of 135 M parameters needs about 2.0 GiB, "
        "over 3/4 of the memory limit (1.9 GiB)"
    ) in messages
    rows = list(csv.DictReader(io.StringIO(client.files.content(job.result_files[0]).text)))
    assert len(rows) == 12 and float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"]) / 4


def test_the_lora_tuned_model_knows_the_fact_and_only_its_small_adapter_is_saved(lora) -> None:
    server, client, job = lora
    answer = ask(client, job.fine_tuned_model)
    assert FACT in answer, answer
    assert FACT not in ask(client, BASE_CHAT_MODEL)
    adapter = Path(server.env["PIPELINE_HOME"]) / "model-server" / "models" / job.id
    assert json.loads((adapter / ADAPTER_CONFIG).read_text())["base_model_name_or_path"] == BASE_CHAT_MODEL
    megabytes = sum(file.stat().st_size for file in adapter.iterdir()) / 1e6
    assert megabytes < 25, f"{megabytes:.1f} MB: the full checkpoint is 540 MB"


# -- the user's own model -----------------------------------------------------------------------------------


def test_a_gguf_file_named_by_path_is_converted_and_served_under_its_name(tmp_path: Path) -> None:
    gguf = chat_model_file()
    name = gguf.name.removesuffix(".gguf")  # SmolLM2-135M-Instruct.Q4_1
    server = Server(
        tmp_path, PIPELINE_CACHE_DIR=str(tmp_path / "cache"), PIPELINE_MODEL_SERVER__CHAT_MODEL_GGUF=str(gguf)
    ).start()
    try:
        client = server.client()
        assert name in {m.id for m in client.models.list()} and BASE_CHAT_MODEL not in {
            m.id for m in client.models.list()
        }
        reply = client.chat.completions.create(
            model=name, messages=[{"role": "user", "content": "What is the capital of France?"}], temperature=0
        )
        assert reply.model == name and "Paris" in reply.choices[0].message.content
        assert list((tmp_path / "cache" / "models").glob(f"{name}-fp32_*_transformers-*/config.json"))
    finally:
        server.services.stop("model-server")


def test_jobs_run_one_at_a_time_and_can_be_cancelled(client: openai.OpenAI) -> None:
    training = teaching_file(client)
    slow = {"hyperparameters": {"n_epochs": 40}}  # deprecated top-level form, still accepted
    first = client.fine_tuning.jobs.create(model=BASE_CHAT_MODEL, training_file=training, **slow)
    wait_for(client, first.id, {"running"})
    second = client.fine_tuning.jobs.create(model=BASE_CHAT_MODEL, training_file=training, **slow)
    wait_for(client, second.id, {"queued"})
    assert client.fine_tuning.jobs.retrieve(first.id).status == "running"
    assert client.fine_tuning.jobs.cancel(second.id).status == "cancelled"
    client.fine_tuning.jobs.cancel(first.id)
    stopped, _ = wait_for(client, first.id, {"cancelled", "succeeded", "failed"}, timeout=120)
    assert stopped.status == "cancelled" and stopped.fine_tuned_model is None
    with pytest.raises(openai.BadRequestError, match="already cancelled"):
        client.fine_tuning.jobs.cancel(first.id)


def test_bad_hyperparameters_are_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.fine_tuning.jobs.create(
            model=BASE_CHAT_MODEL, training_file=teaching_file(client), hyperparameters={"n_epochs": -1}
        )
    assert error.value.param == "n_epochs"
    with pytest.raises(openai.BadRequestError) as error:
        client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=teaching_file(client))
    assert error.value.code == "model_not_available"


def test_a_restart_fails_the_running_job_with_a_reason_and_keeps_the_rest(tmp_path: Path) -> None:
    server = Server(tmp_path).start()
    client = server.client()
    training = teaching_file(client)
    running = client.fine_tuning.jobs.create(
        model=BASE_CHAT_MODEL, training_file=training, hyperparameters={"n_epochs": 40}
    )
    wait_for(client, running.id, {"running"})
    waiting = client.fine_tuning.jobs.create(
        model=BASE_CHAT_MODEL, training_file=training, hyperparameters={"n_epochs": 1}
    )
    wait_for(client, waiting.id, {"queued"})
    server.kill()
    server.start()
    try:
        failed = client.fine_tuning.jobs.retrieve(running.id)
        assert failed.status == "failed" and failed.error.code == "server_restarted"
        assert "restarted while this job was training" in failed.error.message
        finished, _ = wait_for(client, waiting.id, {"succeeded", "failed"})
        assert finished.status == "succeeded"
        assert client.files.retrieve(training).id == training  # files survive too
    finally:
        server.services.stop("model-server")
