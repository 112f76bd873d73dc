"""Operating the pipeline from outside, through a real API server and scheduler.

REST-API triggers (`pipeline trigger`, the curl script), lateness alerts, and clearing, re-running and
backfilling ingestion runs without changing what the knowledge base holds.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import Receiver, environ, free_port, webhook_receiver
from genai_pipeline.airflow_api import AirflowAPI
from genai_pipeline.config import Settings
from genai_pipeline.local.airflow_env import start_airflow, stop_airflow
from genai_pipeline.local.services import Services
from genai_pipeline.local.weaviate_server import start_weaviate
from genai_pipeline.store import Store

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
DAG = "ingest_knowledge_base"
DONE = {"success", "failed"}
TOKEN = "late-alert-token-Zq81"
CRON = "17 4 * * *"
SAMPLE = REPO / "src" / "genai_pipeline" / "sample_kb"


@dataclass
class Stack:
    api: AirflowAPI
    env: dict[str, str]
    webhook: Receiver
    settings: Settings


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Weaviate and Airflow on free ports, a webhook receiver, and a lateness threshold every run passes (3 s)."""
    home = tmp_path_factory.mktemp("triggers")
    api_port = free_port()
    with webhook_receiver() as webhook:
        env = {
            "PIPELINE_HOME": str(home),
            "PIPELINE_WEAVIATE__HTTP_PORT": str(free_port()),
            "PIPELINE_WEAVIATE__GRPC_PORT": str(free_port()),
            # A cron, so the DAG can be backfilled; no tick falls within a test run (catchup is off).
            "PIPELINE_INGEST__SCHEDULE_CRON": CRON,
            # Batches of three documents: a run maps several, one of which a test clears.
            "PIPELINE_INGEST__BATCH_DOCS": "3",
            # The tests' runs name their own folders (a run's conf sources), all under pytest's base folder.
            "PIPELINE_INGEST__ALLOWED_ROOTS": json.dumps([str(tmp_path_factory.getbasetemp())]),
            "PIPELINE_NOTIFY__WEBHOOK_URL": webhook.url,
            "PIPELINE_NOTIFY__WEBHOOK_TOKEN": TOKEN,
            "PIPELINE_NOTIFY__LATE_AFTER_MINUTES": "0.05",
        }
        with environ(env):
            settings = Settings()
            services = Services(settings.home)
            try:
                start_weaviate(settings, services)
                start_airflow(settings, services, api_port)
                api = AirflowAPI(api_port)
                deadline = time.monotonic() + 180
                while not api.dag_loaded(DAG):
                    assert time.monotonic() < deadline, "the ingestion DAG was not parsed"
                    time.sleep(2)
                yield Stack(api, {**os.environ, "AIRFLOW_API_URL": f"http://127.0.0.1:{api_port}"}, webhook, settings)
            finally:
                stop_airflow(services)
                services.stop("weaviate")


def run_started_by(api: AirflowAPI, marker: str, timeout: float = 120) -> str:
    """The asset-triggered ingestion run whose Asset event carries ``marker`` in its extra."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in api.runs(DAG):
            if run["run_type"] != "asset_triggered":
                continue
            events = api.upstream_events(DAG, run["dag_run_id"])
            if any(marker in str(e.get("extra")) for e in events):
                return run["dag_run_id"]
        time.sleep(2)
    raise TimeoutError(f"no ingestion run started by the event marked {marker}")


def finished(api: AirflowAPI, run_id: str, timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    while (state := api.run(DAG, run_id)["state"]) not in DONE:
        assert time.monotonic() < deadline, f"{run_id} still {state}"
        time.sleep(3)
    return state


def test_a_source_asset_event_from_the_cli_starts_ingestion(stack: Stack) -> None:
    api, env = stack.api, stack.env
    cli = [sys.executable, "-m", "genai_pipeline.cli", "trigger", "pipeline-docs", "--extra", "ticket=CI-1"]
    result = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "kb-source://pipeline-docs/: Asset event" in result.stdout
    run_id = run_started_by(api, "CI-1")
    assert finished(api, run_id) == "success"
    (event,) = api.upstream_events(DAG, run_id)
    # Airflow adds from_rest_api: True to what the caller sent.
    assert event["extra"] == {"triggered_by": "pipeline trigger", "ticket": "CI-1", "from_rest_api": True}


def test_the_curl_script_does_the_same_with_nothing_but_http(stack: Stack) -> None:
    api, env = stack.api, stack.env
    script = REPO / "scripts" / "api" / "trigger-source.sh"
    result = subprocess.run(["bash", str(script), "pipeline-docs"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert finished(api, run_started_by(api, "trigger-source.sh")) == "success"


def test_a_dag_run_with_conf_and_the_mistakes_a_caller_can_make(stack: Stack) -> None:
    api, env = stack.api, stack.env
    cli = [sys.executable, "-m", "genai_pipeline.cli", "trigger"]
    result = subprocess.run(
        [*cli, "--dag", DAG, "--conf", '{"dry_run": true}'], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.split("run ", 1)[1].split()[0]
    assert api.run(DAG, run_id)["conf"] == {"dry_run": True}
    unknown = subprocess.run([*cli, "no-such-source"], env=env, capture_output=True, text=True)
    assert unknown.returncode != 0 and "Airflow has no Asset 'kb-source://no-such-source'" in unknown.stderr
    neither = subprocess.run(cli, env=env, capture_output=True, text=True)
    assert neither.returncode == 2 and "name either a SOURCE or --dag" in neither.stderr


def test_a_run_past_its_deadline_is_reported_as_late_without_secrets(stack: Stack) -> None:
    """Airflow's deadline alert (3 s after queueing here) posts to the webhook from the triggerer."""
    run_id = stack.api.trigger(DAG)
    deadline = time.monotonic() + 180
    while not (late := [r.body for r in stack.webhook.requests if r.body.get("run_id") == run_id]):
        assert time.monotonic() < deadline, "no lateness alert arrived"
        time.sleep(1)
    (event,) = late
    assert event["kind"] == "run_late" and event["dag_id"] == DAG
    assert "0.05 min after it was queued" in event["reason"] and run_id in event["text"]
    assert TOKEN not in json.dumps(event)  # the token authenticates the POST and is never in a message
    assert finished(stack.api, run_id) == "success"


def objects_per_document(settings: Settings) -> Counter[str]:
    """How many chunks Weaviate holds for each document."""
    from genai_pipeline.clients.weaviate import weaviate_client

    with weaviate_client(settings.weaviate) as client:
        collection = client.collections.get(settings.weaviate.collection)
        return Counter(str(o.properties["source_uri"]) for o in collection.iterator(return_properties=["source_uri"]))


def test_clearing_a_batch_rerunning_a_run_and_backfilling_change_no_object(stack: Stack, tmp_path: Path) -> None:
    api, store = stack.api, Store(stack.settings.store)
    corpus = tmp_path / "rerun-docs"
    shutil.copytree(SAMPLE, corpus)
    conf = {"sources": {"rerun-docs": str(corpus)}}
    run_id = api.trigger(DAG, conf)
    assert finished(api, run_id) == "success"
    loads = [t for t in api.task_instances(DAG, run_id) if t["task_id"] == "ingest_batch.load"]
    assert len(loads) == 3  # eight documents in batches of three
    counts = objects_per_document(stack.settings)
    ours = {uri: n for uri, n in counts.items() if uri.startswith("rerun-docs/")}
    assert len(ours) == 8 and all(n > 0 for n in ours.values())

    # 1. One mapped batch cleared after the run (and its teardown) finished: it runs again on the same chunks.
    cleared = api.clear_tasks(DAG, run_id, [("ingest_batch.load", 1)])
    assert {t["task_id"] for t in cleared} >= {"ingest_batch.load", "report", "cleanup", "create_schema"}
    assert finished(api, run_id) == "success"
    load = next(
        t for t in api.task_instances(DAG, run_id) if t["task_id"] == "ingest_batch.load" and t["map_index"] == 1
    )
    assert load["try_number"] == 2
    assert "chunking again" in api.task_log(DAG, run_id, "ingest_batch.load", 2, map_index=1)
    assert objects_per_document(stack.settings) == counts

    # 2. The whole run again: its plan finds every document loaded whole.
    api.clear_run(DAG, run_id)
    assert finished(api, run_id) == "success"
    assert api.xcom(DAG, run_id, "plan") == [] and objects_per_document(stack.settings) == counts

    # 3. A backfill of two past cron ticks, as `airflow backfill create` makes it: two more runs, same objects.
    today = datetime.datetime.now(datetime.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = today - datetime.timedelta(days=2), today - datetime.timedelta(seconds=1)
    api.backfill(DAG, start.isoformat(), end.isoformat(), conf)
    deadline = time.monotonic() + 600
    while len(backfilled := [r for r in api.runs(DAG) if r["run_type"] == "backfill"]) < 2:
        assert time.monotonic() < deadline, f"backfill made {len(backfilled)} runs"
        time.sleep(3)
    assert sorted(r["logical_date"][:10] for r in backfilled) == [
        (start + datetime.timedelta(days=n)).date().isoformat() for n in (0, 1)
    ]
    assert all(finished(api, r["dag_run_id"]) == "success" for r in backfilled)
    assert objects_per_document(stack.settings) == counts
    assert store.keys("ingest") == []  # every run's teardown removed its bulk files
