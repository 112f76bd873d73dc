"""The deferrable fine-tuning wait against a real HTTP server that plays a scripted fine-tuning API."""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import suppress
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from airflow.triggers.base import TriggerEvent

from genai_pipeline.config import get_settings
from genai_pipeline.orchestration.finetune_wait import (
    Backoff,
    FineTuneJobLink,
    FineTuneJobTrigger,
    WaitForFineTuneJob,
)

JOB = "ftjob-abc123"
MODEL = "ft:SmolLM2-135M-Instruct:genai-pipeline:abc123"
# A step of a job's script: a status, a dict of job fields, or an HTTP error status.
Step = str | dict[str, Any] | int
_JOB_PATH = re.compile(r"^/v1/fine_tuning/jobs/([^/]+)(/cancel)?$")


class FakeFineTuningAPI:
    """``GET /v1/fine_tuning/jobs/{id}`` answers the job's next scripted step (the last repeats); cancel records."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Step]] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def script(self, job_id: str, *steps: Step) -> None:
        self.scripts[job_id] = list(steps)

    def count(self, method: str) -> int:
        with self._lock:
            return sum(1 for seen, _ in self.requests if seen == method)

    def answer(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append((method, path))
            match = _JOB_PATH.match(path)
            if not match or (method == "POST") != bool(match.group(2)):
                return 404, _error("Not found", "not_found")
            job_id = match.group(1)
            if job_id not in self.scripts:
                return 404, _error(f"No such fine-tuning job: {job_id}", "fine-tuning_job_not_found")
            if method == "POST":
                self.scripts[job_id] = ["cancelled"]
                return 200, _job(job_id, "cancelled")
            steps = self.scripts[job_id]
            step = steps.pop(0) if len(steps) > 1 else steps[0]
        if isinstance(step, int):
            return step, _error("The server had an error while processing your request.", None)
        return 200, _job(job_id, step) if isinstance(step, str) else _job(job_id, **step)


def _error(message: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}


def _job(job_id: str, status: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": job_id,
        "object": "fine_tuning.job",
        "created_at": 1_700_000_000,
        "error": None,
        "fine_tuned_model": None,
        "finished_at": None,
        "hyperparameters": {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 2.0},
        "model": "SmolLM2-135M-Instruct",
        "organization_id": "org-local",
        "result_files": [],
        "seed": 42,
        "status": status,
        "trained_tokens": None,
        "training_file": "file-train",
        "validation_file": None,
        **fields,
    }


def _handler(api: FakeFineTuningAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _respond(self) -> None:
            if length := int(self.headers.get("Content-Length") or 0):
                self.rfile.read(length)
            status, body = api.answer(self.command, self.path)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 429:
                self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _respond

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeFineTuningAPI]:
    """The fake API on a free loopback port; settings (read by the trigger from env) point at it."""
    fake = FakeFineTuningAPI()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("PIPELINE_OPENAI__BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/v1")
    # The client's own retries would only slow the transient-error test down; the trigger retries anyway.
    monkeypatch.setenv("PIPELINE_OPENAI__MAX_RETRIES", "0")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    get_settings.cache_clear()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        get_settings.cache_clear()


class FakeTaskInstance:
    """Just what the operator touches: XCom pushes."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def _trigger(**overrides: Any) -> FineTuneJobTrigger:
    return FineTuneJobTrigger(**{"job_id": JOB, "poll_seconds": 0.001, "max_poll_seconds": 0.005, **overrides})


async def _events(trigger: FineTuneJobTrigger) -> list[TriggerEvent]:
    stream: AsyncIterator[TriggerEvent] = trigger.run()
    return [event async for event in stream]


def _run(trigger: FineTuneJobTrigger) -> list[TriggerEvent]:
    return asyncio.run(asyncio.wait_for(_events(trigger), timeout=5))


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


def test_the_trigger_fires_one_event_when_the_job_succeeds(api: FakeFineTuningAPI) -> None:
    done = {"status": "succeeded", "fine_tuned_model": MODEL, "trained_tokens": 4321}
    api.script(JOB, "validating_files", "queued", "running", "running", done)
    events = _run(_trigger())
    assert [event.payload for event in events] == [
        {"job_id": JOB, "status": "succeeded", "fine_tuned_model": MODEL, "error": None, "trained_tokens": 4321}
    ]
    assert api.count("GET") == 5 and api.count("POST") == 0


def test_backoff_grows_by_half_caps_and_resets_on_a_status_change() -> None:
    backoff = Backoff(1.0, 3.0)
    intervals = [backoff.next(status) for status in ["queued", "queued", "queued", "queued", "queued"]]
    assert intervals == [1.0, 1.5, 2.25, 3.0, 3.0]
    assert [backoff.next("running"), backoff.next(None), backoff.next("running")] == [1.0, 1.5, 2.25]
    assert Backoff(5.0, 2.0).next("queued") == 5.0 and Backoff(5.0, 2.0).max_poll_seconds == 5.0


def test_the_trigger_waits_with_backoff_between_polls(api: FakeFineTuningAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    api.script(JOB, "validating_files", "queued", *["running"] * 5, {"status": "succeeded", "fine_tuned_model": MODEL})
    trigger = _trigger(poll_seconds=0.01, max_poll_seconds=0.03)
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(trigger, "_wait", record)
    assert _run(trigger)[0].payload["status"] == "succeeded"
    # validating_files, queued, then running: reset on each change, x1.5 while it stays, capped at 0.03.
    assert waits == pytest.approx([0.01, 0.01, 0.01, 0.015, 0.0225, 0.03, 0.03])


def test_transient_errors_while_polling_do_not_end_the_wait(api: FakeFineTuningAPI) -> None:
    api.script(JOB, "running", 500, 503, 429, "running", {"status": "succeeded", "fine_tuned_model": MODEL})
    events = _run(_trigger())
    assert len(events) == 1 and events[0].payload["status"] == "succeeded"
    assert api.count("GET") == 6


def test_a_failed_job_fails_the_task_with_the_api_reason(api: FakeFineTuningAPI) -> None:
    error = {"code": "invalid_training_file", "message": "Line 3 of the training file has no assistant message."}
    api.script(JOB, "running", {"status": "failed", "error": {**error, "param": "training_file"}})
    (event,) = _run(_trigger())
    assert event.payload["status"] == "failed" and event.payload["error"] == error
    operator = WaitForFineTuneJob(task_id="wait", job_id=JOB)
    expected = f"fine-tuning job {JOB} failed: Line 3 of the training file has no assistant message. "
    with pytest.raises(AirflowException, match=re.escape(expected + "(invalid_training_file)")):
        operator.execute_complete({}, event.payload)


def test_a_missing_job_ends_the_wait_with_the_404_reason(api: FakeFineTuningAPI) -> None:
    (event,) = _run(_trigger(job_id="ftjob-nope"))
    assert event.payload["status"] == "missing"
    assert event.payload["error"] == {
        "code": "fine-tuning_job_not_found",
        "message": "No such fine-tuning job: ftjob-nope",
    }
    with pytest.raises(AirflowException, match="ftjob-nope was not found: No such fine-tuning job: ftjob-nope"):
        WaitForFineTuneJob(task_id="wait", job_id="ftjob-nope").execute_complete({}, event.payload)


def test_execute_defers_a_running_job_and_persists_its_link(
    api: FakeFineTuningAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINE_FINE_TUNE__POLL_SECONDS", "7")
    get_settings.cache_clear()
    api.script(JOB, "running")
    ti = FakeTaskInstance()
    operator = WaitForFineTuneJob(task_id="wait", job_id=f"  {JOB}\n", max_poll_seconds=30)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({"ti": ti})
    assert deferred.value.method_name == "execute_complete"
    classpath, kwargs = deferred.value.trigger.serialize()
    assert classpath == "genai_pipeline.orchestration.finetune_wait.FineTuneJobTrigger"
    assert kwargs == {"job_id": JOB, "poll_seconds": 7.0, "max_poll_seconds": 30}
    assert ti.xcom == {"_link_FineTuneJobLink": f"{get_settings().openai_base_url}/fine_tuning/jobs/{JOB}"}
    # Killed before the trigger took over: the operator cancels the job itself.
    operator.on_kill()
    assert api.requests[-1] == ("POST", f"/v1/fine_tuning/jobs/{JOB}/cancel")


def test_execute_finishes_without_deferring_when_the_job_already_ended(api: FakeFineTuningAPI) -> None:
    api.script(JOB, {"status": "succeeded", "fine_tuned_model": MODEL, "trained_tokens": 99})
    result = WaitForFineTuneJob(task_id="wait", job_id=JOB).execute({"ti": FakeTaskInstance()})
    assert result == {"job_id": JOB, "fine_tuned_model": MODEL, "trained_tokens": 99}
    api.script("ftjob-gone", "cancelled")
    with pytest.raises(AirflowException, match=r"fine-tuning job ftjob-gone was cancelled$"):
        WaitForFineTuneJob(task_id="wait", job_id="ftjob-gone").execute({"ti": FakeTaskInstance()})


def test_on_kill_cancels_the_job_but_cleanup_does_not(api: FakeFineTuningAPI) -> None:
    api.script(JOB, "running")
    trigger = _trigger()

    async def scenario() -> None:
        polling = asyncio.create_task(_events(trigger))
        await _until(lambda: api.count("GET") >= 3)
        # What the triggerer does on a restart or redeploy: cancel the run, then clean up. The job lives on.
        polling.cancel()
        with suppress(asyncio.CancelledError):
            await polling
        await trigger.cleanup()
        assert api.count("POST") == 0
        # A user marked the task failed: the triggerer calls on_kill.
        await trigger.on_kill()

    asyncio.run(scenario())
    assert [request for request in api.requests if request[0] == "POST"] == [
        ("POST", f"/v1/fine_tuning/jobs/{JOB}/cancel")
    ]


def test_the_trigger_serializes_to_an_importable_classpath_and_json_kwargs() -> None:
    trigger = _trigger(poll_seconds=2.5, max_poll_seconds=40.0)
    classpath, kwargs = trigger.serialize()
    # How the triggerer re-creates it: import the classpath, call it with the (JSON-stored) kwargs.
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
    assert isinstance(rebuilt, FineTuneJobTrigger)
    assert rebuilt.serialize() == (classpath, {"job_id": JOB, "poll_seconds": 2.5, "max_poll_seconds": 40.0})


def test_the_link_url_follows_the_template(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_OPENAI__BASE_URL", "http://10.0.0.5:8088/v1/")
    get_settings.cache_clear()
    try:
        link = FineTuneJobLink()
        assert link.name == "Fine-tuning job" and link.xcom_key == "_link_FineTuneJobLink"
        assert link.url_for(JOB) == f"http://10.0.0.5:8088/v1/fine_tuning/jobs/{JOB}"
        # What the task runner's finalize() pushes: the URL for the rendered job id, nothing for a template.
        rendered = WaitForFineTuneJob(task_id="wait", job_id=JOB)
        assert link.get_link(rendered, ti_key=None) == link.url_for(JOB)  # type: ignore[arg-type]
        template = WaitForFineTuneJob(task_id="wait", job_id="{{ ti.xcom_pull(task_ids='submit')['job_id'] }}")
        assert link.get_link(template, ti_key=None) == ""  # type: ignore[arg-type]
        monkeypatch.setenv("PIPELINE_FINE_TUNE__JOB_URL_TEMPLATE", "https://platform.openai.com/finetune/{job_id}")
        get_settings.cache_clear()
        assert link.url_for(JOB) == f"https://platform.openai.com/finetune/{JOB}"
    finally:
        get_settings.cache_clear()


def test_the_serialized_dag_keeps_the_link_as_an_xcom_key() -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("finetune_wait_link", schedule=None, start_date=datetime(2025, 1, 1)) as dag:
        WaitForFineTuneJob(task_id="wait", job_id="{{ ti.xcom_pull(task_ids='submit')['job_id'] }}")
    encoded = DagSerialization.to_dict(dag)
    (task,) = encoded["dag"]["tasks"]
    assert task["__var"]["_operator_extra_links"] == {"Fine-tuning job": "_link_FineTuneJobLink"}
    (link,) = DagSerialization.from_dict(encoded).get_task("wait").operator_extra_links
    assert (link.name, link.xcom_key) == ("Fine-tuning job", "_link_FineTuneJobLink")
