"""The fine-tuning path under a real scheduler, triggerer and the local model server, chained by Asset events.

One stack for the module. Its model server serves a small chat model the module builds (SmolLM2's tokenizer
and chat template, two narrow layers of random weights), from a folder as it serves a user's own model: a job
trains in seconds and an answer takes a fraction of one. These tests prove the orchestration; that a fine-tune
teaches a fact is proved once, on SmolLM2 itself, in test_model_server.py. The first champion is a module
fixture that every test making a job asks for, so the tests pass in any order.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from PIL import Image

from conftest import (
    Mailbox,
    Receiver,
    environ,
    free_port,
    random_chat_model,
    smtp_receiver,
    tls_authority,
    webhook_receiver,
)
from genai_pipeline.airflow_api import AirflowAPI
from genai_pipeline.config import Settings
from genai_pipeline.local.airflow_env import start_airflow, stop_airflow
from genai_pipeline.local.model_server import start_model_server
from genai_pipeline.local.services import Services
from genai_pipeline.steps import finetune_store as layout
from genai_pipeline.steps.champion import history
from genai_pipeline.steps.keys import safe_name
from genai_pipeline.store import Store

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "genai_pipeline" / "examples"
TOKEN = "webhook-secret-token"
SMTP_PASSWORD = "smtp-secret-password"
DONE = {"success", "failed"}
# The first fine-tune's hyperparameters (the module's defaults) and a second set: a second job, a second model.
FIRST = {"n_epochs": 1, "learning_rate_multiplier": 0.05}
SECOND = {"n_epochs": 2, "learning_rate_multiplier": 2}


@dataclass
class Stack:
    api: AirflowAPI
    client: openai.OpenAI
    store: Store
    examples: Path
    webhook: Receiver
    mailbox: Mailbox

    def wait(self, dag_id: str, run_id: str, timeout: float = 900) -> tuple[dict[str, Any], set[tuple[str, str]]]:
        """Follow a run to its end; also every (task, state) seen on the way (a deferral lasts seconds)."""
        seen: set[tuple[str, str]] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen |= {(t["task_id"], t["state"] or "") for t in self.api.task_instances(dag_id, run_id)}
            run = self.api.run(dag_id, run_id)
            if run["state"] in DONE:
                seen |= {(t["task_id"], t["state"] or "") for t in self.api.task_instances(dag_id, run_id)}
                return run, seen
            time.sleep(1)
        raise TimeoutError(f"{dag_id} {run_id} did not finish in {timeout:.0f}s")

    def caused(self, dag_id: str, source_dag: str, source_run: str, timeout: float = 120) -> str:
        """The run of ``dag_id`` that ``source_run``'s Asset events started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run_id = self.api.run_caused_by(dag_id, source_dag, source_run)
            if run_id:
                return run_id
            time.sleep(1)
        raise TimeoutError(f"no {dag_id} run was caused by {source_dag} {source_run}")

    def tis(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        return {t["task_id"]: t for t in self.api.task_instances(dag_id, run_id)}

    def log(self, dag_id: str, run_id: str, task_id: str) -> str:
        ti = self.tis(dag_id, run_id)[task_id]
        return self.api.task_log(dag_id, run_id, task_id, ti["try_number"])

    def jobs(self) -> list[Any]:
        return self.client.fine_tuning.jobs.list(limit=100).data

    def after_gate(self, gate_run: str) -> tuple[str, str]:
        """The fine-tune run a gate run started, and the champion/challenger run that one started."""
        tune_run = self.caused("fine_tune", "evaluate_examples", gate_run)
        run, _ = self.wait("fine_tune", tune_run)
        assert run["state"] == "success", self.log("fine_tune", tune_run, "submit_fine_tune")
        champion_run = self.caused("champion_challenger", "fine_tune", tune_run)
        assert self.wait("champion_challenger", champion_run)[0]["state"] == "success"
        return tune_run, champion_run


@pytest.fixture(scope="module")
def small_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder the model server serves as the base model ``SmolLM2-tiny``: SmolLM2's tokenizer, random weights."""
    import torch
    from transformers import AutoTokenizer

    from genai_pipeline.models.chat import base_checkpoint

    # SmolLM2's tokenizer with its chat template: prompts are built as for SmolLM2.
    tokenizer = AutoTokenizer.from_pretrained(base_checkpoint(Settings().cache_dir))
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("models") / "SmolLM2-tiny"
    return random_chat_model(
        folder, tokenizer, hidden=64, layers=2, heads=4, max_position_embeddings=8192, tie_word_embeddings=True
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, small_chat_model: Path) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("fine-tune")
    examples = root / "examples"
    shutil.copytree(EXAMPLES, examples)
    api_port, server_port = free_port(), free_port()
    tls, authority = tls_authority(root)  # the mail relay speaks STARTTLS with a certificate the tasks trust
    with webhook_receiver() as webhook, smtp_receiver(tls_context=tls, require_starttls=True) as mailbox:
        env = {
            "PIPELINE_HOME": str(root / "home"),
            "PIPELINE_MODEL_SERVER__PORT": str(server_port),
            "PIPELINE_MODEL_SERVER__CHAT_MODEL_DIR": str(small_chat_model),
            "PIPELINE_FINE_TUNE__BASE_MODEL": small_chat_model.name,
            # The killed and cancelled jobs' 40 epochs (520 steps, minutes on this model) must outlast the test.
            "PIPELINE_MODEL_SERVER__MAX_TRAIN_STEPS": "1000",
            # The first job creation is carried out and its response lost: the retry must find that job.
            "PIPELINE_MODEL_SERVER__FAULT_LOST_JOB_RESPONSES": "1",
            "PIPELINE_FINE_TUNE__TRAIN_EXAMPLES": str(examples / "train"),
            "PIPELINE_FINE_TUNE__VALIDATION_EXAMPLES": str(examples / "validation"),
            "PIPELINE_FINE_TUNE__HELDOUT": str(examples / "heldout.jsonl"),
            "PIPELINE_FINE_TUNE__N_EPOCHS": str(FIRST["n_epochs"]),
            "PIPELINE_FINE_TUNE__LEARNING_RATE_MULTIPLIER": str(FIRST["learning_rate_multiplier"]),
            "PIPELINE_FINE_TUNE__POLL_SECONDS": "1",
            "PIPELINE_FINE_TUNE__MAX_POLL_SECONDS": "3",
            "PIPELINE_RUNTIME__RETRY_DELAY_SECONDS": "1",
            "PIPELINE_INGEST__SCHEDULE_CRON": "",
            # A new champion would start generate_content, which this stack cannot run (it has no Weaviate): its
            # failures would be alerts of their own (test_demo.py runs generation on a champion).
            "PIPELINE_GENERATION__REGENERATE_ON_CHAMPION": "false",
            "PIPELINE_NOTIFY__WEBHOOK_URL": webhook.url,
            "PIPELINE_NOTIFY__WEBHOOK_TOKEN": TOKEN,
            "PIPELINE_NOTIFY__SMTP_HOST": mailbox.host,
            "PIPELINE_NOTIFY__SMTP_PORT": str(mailbox.port),
            "PIPELINE_NOTIFY__SMTP_SECURITY": "starttls",
            "SSL_CERT_FILE": str(authority),
            "PIPELINE_NOTIFY__SMTP_USER": "alerts",
            "PIPELINE_NOTIFY__SMTP_PASSWORD": SMTP_PASSWORD,
            "PIPELINE_NOTIFY__EMAIL_TO": '["ml-team@example.com"]',
        }
        with environ(env):
            settings = Settings()
            services = Services(settings.home)
            try:
                start_model_server(settings, services, env)
                start_airflow(settings, services, api_port)
                api = AirflowAPI(api_port)
                deadline = time.monotonic() + 180
                while not all(api.dag_loaded(d) for d in ("format_examples", "champion_challenger")):
                    assert time.monotonic() < deadline, "DAGs not parsed"
                    time.sleep(2)
                client = openai.OpenAI(base_url=settings.model_server.base_url, api_key="unused", max_retries=2)
                yield Stack(api, client, Store(settings.store), examples, webhook, mailbox)
            finally:
                stop_airflow(services)
                services.stop("model-server")


@dataclass
class FirstChampion:
    """The runs the examples' Asset events chained on the fresh stack, and the model they made champion."""

    format_run: str
    gate_run: str
    tune_run: str
    champion_run: str
    model: str


@pytest.fixture(scope="module")
def first_champion(stack: Stack) -> FirstChampion:
    """Format the examples on the fresh stack and follow the Asset events to a first champion.

    Every test that makes a job asks for it, so this job is the server's first: the one whose response is lost.
    """
    format_run = stack.api.trigger("format_examples")
    assert stack.wait("format_examples", format_run)[0]["state"] == "success"
    gate_run = stack.caused("evaluate_examples", "format_examples", format_run)
    assert stack.wait("evaluate_examples", gate_run)[0]["state"] == "success"
    tune_run, champion_run = stack.after_gate(gate_run)
    model = stack.store.read_json(layout.LATEST_CHALLENGER)["model"]
    return FirstChampion(format_run, gate_run, tune_run, champion_run, model)


def test_examples_flow_by_asset_events_to_a_first_champion(stack: Stack, first_champion: FirstChampion) -> None:
    format_run, gate_run, tune_run = first_champion.format_run, first_champion.gate_run, first_champion.tune_run
    groups = [t for t in stack.api.task_instances("format_examples", format_run) if t["task_id"] == "format_examples"]
    assert sorted(t["rendered_map_index"] for t in groups) == [
        "train/long",
        "train/short",
        "validation/long",
        "validation/short",
    ]
    assert stack.tis("evaluate_examples", gate_run)["over_budget"]["state"] == "skipped"

    tis = stack.tis("fine_tune", tune_run)
    # The lost response failed the first try after the job was made; the retry found it: one job, not two.
    assert tis["submit_fine_tune"]["try_number"] == 2
    job = stack.client.fine_tuning.jobs.retrieve(stack.api.xcom("fine_tune", tune_run, "submit_fine_tune")["job_id"])
    assert job.status == "succeeded" and job.fine_tuned_model == first_champion.model
    assert [j.id for j in stack.jobs() if (j.metadata or {}).get("pipeline_key") == job.metadata["pipeline_key"]] == [
        job.id
    ]
    assert "already made for key" in stack.log("fine_tune", tune_run, "submit_fine_tune")
    # The wait gave its worker slot back: the triggerer, not the task, polled the job.
    assert f"Fine-tuning job {job.id}: (start) ->" in stack.log("fine_tune", tune_run, "wait_for_job")

    metrics = stack.store.read_json(layout.model_file(job.id, "metrics.json"))
    assert metrics["model"] == job.fine_tuned_model and metrics["valid_points"] >= 1
    assert metrics["min_train_loss"] <= metrics["first_train_loss"] and metrics["final_valid_loss"] > 0
    png = stack.store.path(layout.model_file(job.id, "loss.png"))
    assert Image.open(png).size[0] >= 600
    lineage = stack.store.read_json(layout.lineage(job.fine_tuned_model))
    assert lineage["job_id"] == job.id and lineage["hyperparameters"]["n_epochs"] == FIRST["n_epochs"]
    assert metrics["steps"] == lineage["dataset"]["train_examples"] * FIRST["n_epochs"]  # batch size 1
    assert lineage["runs"] == {"format_examples": format_run, "evaluate_examples": gate_run, "fine_tune": tune_run}
    trained_on = {e["file"] for e in lineage["examples"]}
    assert "train/short" in {f.rsplit("/", 1)[0] for f in trained_on} and all(
        len(e["sha256"]) == 64 for e in lineage["examples"]
    )
    links = json.dumps(
        stack.api._request(
            "GET", f"/api/v2/dags/fine_tune/dagRuns/{urllib.parse.quote(tune_run)}/taskInstances/wait_for_job/links"
        )
    )
    assert "Fine-tuning job" in links and f"/fine_tuning/jobs/{job.id}" in links

    record = history(stack.store)[0]
    assert record["model"] == job.fine_tuned_model and record["decision"] == "no_champion"
    assert record["run_id"] == first_champion.champion_run
    assert record["scores"]["champion"] is None and 0 <= record["scores"]["challenger"]["fact_coverage"] <= 1
    assert record["dataset"]["train_sha256"] == lineage["dataset"]["train_sha256"]


def test_the_branch_follows_the_decision_and_a_losing_model_asked_again_loses_again(
    stack: Stack, first_champion: FirstChampion
) -> None:
    """A second model against the champion: both scored, the branch taken is the decision's, the record follows.

    Which of two random-weight models answers better is not the point here (test_model_server.py proves that
    tuning teaches); greedy answers are repeatable, so the loser, asked for again by name, loses again.
    """
    before = stack.store.read_json(layout.CHAMPION)["model"]
    promoted = len(history(stack.store))
    tune_run = stack.api.trigger("fine_tune", SECOND)
    assert stack.wait("fine_tune", tune_run)[0]["state"] == "success"
    challenger = stack.store.read_json(layout.LATEST_CHALLENGER)["model"]
    champion_run = stack.caused("champion_challenger", "fine_tune", tune_run)
    assert stack.wait("champion_challenger", champion_run)[0]["state"] == "success"
    decision = stack.store.read_json(layout.decision(safe_name(champion_run)))
    scores = {"challenger": decision["challenger_scores"], "champion": decision["champion_scores"]}
    assert scores["challenger"]["model"] == challenger and scores["champion"]["model"] == before
    assert scores["challenger"]["items"] == scores["champion"]["items"]  # one held-out set for both
    assert decision["score_weights"] == {"fact_coverage": 0.5, "citations": 0.25, "groundedness": 0.25}
    tis = stack.tis("champion_challenger", champion_run)
    if decision["decision"] == "challenger_wins":
        assert (tis["promote_challenger"]["state"], tis["keep_champion"]["state"]) == ("success", "skipped")
        record = stack.store.read_json(layout.CHAMPION)
        assert record["model"] == challenger and record["previous_champion"] == before
        assert record["scores"] == scores
        assert [h["model"] for h in history(stack.store)[promoted:]] == [challenger]
        loser, champion = before, challenger
    else:
        assert decision["decision"] == "challenger_loses"
        assert (tis["promote_challenger"]["state"], tis["keep_champion"]["state"]) == ("skipped", "success")
        assert len(history(stack.store)) == promoted
        loser, champion = challenger, before

    run_id = stack.api.trigger("champion_challenger", {"challenger": loser})
    assert stack.wait("champion_challenger", run_id)[0]["state"] == "success"
    tis = stack.tis("champion_challenger", run_id)
    assert tis["promote_challenger"]["state"] == "skipped" and tis["keep_champion"]["state"] == "success"
    assert stack.store.read_json(layout.CHAMPION)["model"] == champion
    again = stack.store.read_json(layout.decision(safe_name(run_id)))
    assert again["decision"] == "challenger_loses" and again["champion"] == champion


def test_a_rerun_over_unchanged_examples_submits_no_new_job(stack: Stack, first_champion: FirstChampion) -> None:
    before = {j.id for j in stack.jobs()}
    lineage = stack.store.read_json(layout.lineage(first_champion.model))
    gate_run = stack.api.trigger("evaluate_examples")
    assert stack.wait("evaluate_examples", gate_run)[0]["state"] == "success"
    tune_run, _ = stack.after_gate(gate_run)
    assert {j.id for j in stack.jobs()} == before
    assert "not submitting again" in stack.log("fine_tune", tune_run, "submit_fine_tune")
    # The model's lineage still names the runs that made it, not the re-run that found its job.
    assert stack.store.read_json(layout.lineage(first_champion.model)) == lineage

    # The same fine-tune run cleared and run again (a Clear in the UI, a re-run through the API): no new job.
    scored = len(stack.api.runs("champion_challenger"))
    stack.api.clear_run("fine_tune", tune_run)
    assert stack.wait("fine_tune", tune_run)[0]["state"] == "success"
    assert stack.tis("fine_tune", tune_run)["submit_fine_tune"]["try_number"] == 2
    assert "not submitting again" in stack.log("fine_tune", tune_run, "submit_fine_tune")
    assert {j.id for j in stack.jobs()} == before
    # Its results updated the challenger Asset again: that scoring run ends before another test starts.
    deadline = time.monotonic() + 600
    while len(runs := stack.api.runs("champion_challenger")) == scored or runs[0]["state"] not in ("success", "failed"):
        assert time.monotonic() < deadline, "the champion/challenger run of the re-run did not end"
        time.sleep(2)
    assert runs[0]["state"] == "success"


@pytest.mark.usefixtures("first_champion")  # the gate reads formatted examples
def test_over_budget_stops_before_any_upload_and_notifies(stack: Stack) -> None:
    files_before = len(stack.client.files.list().data)
    received = len(stack.webhook.requests)
    gate_run = stack.api.trigger("evaluate_examples", {"budget_usd": 0.0000001})
    assert stack.wait("evaluate_examples", gate_run)[0]["state"] == "success"
    tis = stack.tis("evaluate_examples", gate_run)
    assert tis["combine_examples"]["state"] == "skipped" and tis["over_budget"]["state"] == "success"
    assert "stopped before any upload" in stack.log("evaluate_examples", gate_run, "over_budget")
    event = next(r for r in stack.webhook.requests[received:] if r.body["kind"] == "budget_exceeded")
    assert event.headers["authorization"] == f"Bearer {TOKEN}" and event.body["run_id"] == gate_run
    assert event.body["estimated_usd"] > event.body["budget_usd"]
    time.sleep(5)
    assert stack.api.run_caused_by("fine_tune", "evaluate_examples", gate_run) is None
    assert len(stack.client.files.list().data) == files_before


@contextmanager
def examples_changed(stack: Stack, tmp_path: Path) -> Iterator[Path]:
    """Let a test change the example folders; afterwards they and their formatted copies in the store are as before.

    The gate reads the last formatting run's output, so a test that formatted empty or broken examples would
    otherwise decide what a later test's gate sees.
    """
    formatted = Path(stack.store.path(layout.ROOT, "formatted"))
    shutil.copytree(stack.examples, tmp_path / "examples")
    shutil.copytree(formatted, tmp_path / "formatted")
    try:
        yield stack.examples
    finally:
        for saved, original in ((tmp_path / "examples", stack.examples), (tmp_path / "formatted", formatted)):
            shutil.rmtree(original)
            shutil.move(saved, original)


@pytest.mark.usefixtures("first_champion")  # its job stays the server's first
def test_a_malformed_line_is_reported_with_its_file_and_line(stack: Stack, tmp_path: Path) -> None:
    with examples_changed(stack, tmp_path) as examples:
        short = examples / "train" / "short"
        (short / "extra.jsonl").write_text(
            '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n'
            '{"messages": [{"role": "user", "content": "no answer"}]}\n'
        )
        (short / "empty.txt").write_text("")
        format_run = stack.api.trigger("format_examples")
        assert stack.wait("format_examples", format_run)[0]["state"] == "success"
        manifest = stack.store.read_json(layout.formatted("train", "short", ".manifest.json"))
        assert manifest["rejected"] == [{"file": "train/short/empty.txt", "reason": manifest["rejected"][0]["reason"]}]
        gate_run = stack.caused("evaluate_examples", "format_examples", format_run)
        assert stack.wait("evaluate_examples", gate_run)[0]["state"] == "success"
        log = stack.log("evaluate_examples", gate_run, "evaluate_examples")
        assert "train/short/extra.jsonl line 2" in log and "no assistant message" in log
        report = stack.store.read_json(layout.gate_run(safe_name(gate_run), "report.json"))
        assert [(i["file"], i["line"]) for i in report["invalid"]] == [("train/short/extra.jsonl", 2)]
        # The good line of the file is in; the rest of the batch went on to a new dataset and job.
        stack.after_gate(gate_run)


@pytest.mark.usefixtures("first_champion")  # the examples were formatted once: the stack's starting state
def test_no_valid_examples_fails_the_gate_and_notifies(stack: Stack, tmp_path: Path) -> None:
    received, mailed = len(stack.webhook.requests), len(stack.mailbox.messages)
    with examples_changed(stack, tmp_path) as examples:
        shutil.rmtree(examples / "train")
        for group in ("short", "long"):
            (examples / "train" / group).mkdir(parents=True)
        format_run = stack.api.trigger("format_examples")
        assert stack.wait("format_examples", format_run)[0]["state"] == "success"
        gate_run = stack.caused("evaluate_examples", "format_examples", format_run)
        assert stack.wait("evaluate_examples", gate_run)[0]["state"] == "failed"
    assert "no valid train example left" in stack.log("evaluate_examples", gate_run, "evaluate_examples")
    failed = [r.body for r in stack.webhook.requests[received:] if r.body["kind"] == "task_failed"]
    assert failed and failed[0]["task_id"] == "evaluate_examples" and "no valid train" in failed[0]["reason"]
    # The same alert by email, through the real SMTP server: DAG, task, run and reason; no secret.
    mails = [m for m in stack.mailbox.messages[mailed:] if "task failed" in m["Subject"]]
    assert mails, f"no failure email among {[m['Subject'] for m in stack.mailbox.messages]}"
    mail = mails[0]
    assert "evaluate_examples.evaluate_examples" in mail["Subject"] and f"run_id: {gate_run}" in mail.get_content()
    assert "no valid train example left" in mail.get_content()
    assert SMTP_PASSWORD not in mail.as_string() and TOKEN not in mail.as_string()


def wait_for_deferral(stack: Stack, run_id: str, timeout: float = 180) -> Any:
    """The job of a fine-tune run once the triggerer polls it (the job is queued or training).

    Deferred is not enough: until the triggerer has picked the trigger up there is no trigger to kill,
    and Airflow has no hook for a task killed in that window (docs/fine-tuning.md says so).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tis = stack.tis("fine_tune", run_id)
        if tis.get("wait_for_job", {}).get("state") == "deferred":
            assert tis["submit_fine_tune"]["state"] == "success"
            job_id = stack.api.xcom("fine_tune", run_id, "submit_fine_tune")["job_id"]
            if f"Fine-tuning job {job_id}: (start) ->" in stack.log("fine_tune", run_id, "wait_for_job"):
                return stack.client.fine_tuning.jobs.retrieve(job_id)
        time.sleep(1)
    raise TimeoutError("the triggerer never polled the job")


@pytest.mark.usefixtures("first_champion")
def test_killing_the_wait_cancels_the_job_and_a_cancelled_job_fails_the_run(stack: Stack) -> None:
    killed_run = stack.api.trigger("fine_tune", {"n_epochs": 40})
    job = wait_for_deferral(stack, killed_run)
    stack.api._request(
        "PATCH",
        f"/api/v2/dags/fine_tune/dagRuns/{urllib.parse.quote(killed_run)}/taskInstances/wait_for_job",
        {"new_state": "failed"},
    )
    deadline = time.monotonic() + 60
    while stack.client.fine_tuning.jobs.retrieve(job.id).status != "cancelled":
        assert time.monotonic() < deadline, "killing the task did not cancel the job"
        time.sleep(1)
    assert stack.wait("fine_tune", killed_run)[0]["state"] == "failed"

    cancelled_run = stack.api.trigger("fine_tune", {"n_epochs": 39})
    job = wait_for_deferral(stack, cancelled_run)
    stack.client.fine_tuning.jobs.cancel(job.id)
    assert stack.wait("fine_tune", cancelled_run)[0]["state"] == "failed"
    log = stack.log("fine_tune", cancelled_run, "wait_for_job")
    assert job.id in log and "cancelled" in log
    assert stack.tis("fine_tune", cancelled_run)["fine_tune_results"]["state"] == "upstream_failed"
