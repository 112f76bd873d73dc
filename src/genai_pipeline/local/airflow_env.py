"""Real Airflow for the embedded default: metadata DB, scheduler, dag-processor, triggerer, API server.

Everything lives under ``<home>/airflow``; DAGs come from the project's ``dags/`` folder. Asset-chained
DAGs need the scheduler, so the demo runs these components rather than ``airflow dags test`` alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from genai_pipeline.config import Settings
from genai_pipeline.local.services import Services, answers

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def dags_folder() -> Path:
    """The project's ``dags/`` (next to ``src/`` in a checkout), or ``./dags``."""
    override = os.environ.get("PIPELINE_DAGS_FOLDER")
    if override:
        return Path(override)
    checkout = Path(__file__).resolve().parents[3] / "dags"
    return checkout if checkout.is_dir() else Path.cwd() / "dags"


def airflow_env(settings: Settings, api_port: int = 8080) -> dict[str, str]:
    """Environment shared by every Airflow command and component of the local deployment."""
    home = settings.home / "airflow"
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        # One local worker slot per core; the embedding step already uses every core it gets.
        "AIRFLOW__CORE__PARALLELISM": str(max(os.cpu_count() or 2, 2)),
        "PIPELINE_HOME": str(settings.home),
        "PIPELINE_CACHE_DIR": str(settings.cache_dir),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "NO_PROXY": "127.0.0.1,localhost",
    }


def airflow_bin() -> str:
    """The ``airflow`` executable of this environment."""
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else (shutil.which("airflow") or "airflow")


def migrate(settings: Settings) -> None:
    """Create or upgrade the metadata database (SQLite under the home)."""
    (settings.home / "airflow").mkdir(parents=True, exist_ok=True)
    subprocess.run([airflow_bin(), "db", "migrate"], env=airflow_env(settings), check=True, capture_output=True)


def start_airflow(settings: Settings, services: Services, api_port: int = 8080) -> None:
    """Start every component; returns once the API server answers."""
    migrate(settings)
    env = airflow_env(settings, api_port)
    for component in COMPONENTS:
        ready = (
            (lambda: answers(f"http://127.0.0.1:{api_port}/api/v2/monitor/health"))
            if component == "api-server"
            else (lambda: True)
        )
        services.start(f"airflow-{component}", [airflow_bin(), component], env, ready, timeout=180)


def stop_airflow(services: Services) -> None:
    """Stop every component (scheduler first, so no new task starts)."""
    for component in reversed(COMPONENTS):
        services.stop(f"airflow-{component}")


class AirflowAPI:
    """The few REST calls the demo and the e2e test make, with a token from the simple auth manager."""

    def __init__(self, port: int = 8080, *, base_url: str | None = None) -> None:
        self.base = (base_url or f"http://127.0.0.1:{port}").rstrip("/")
        self._token = self._request("GET", "/auth/token", auth=False)["access_token"]

    def _request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Content-Type": "application/json",
                **({"Authorization": f"Bearer {self._token}"} if auth else {}),
            },
        )
        # The local metadata database is SQLite: a read can meet a write lock and answer 500; GETs try again.
        attempts = 4 if method == "GET" else 1
        for attempt in range(attempts):
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return json.loads(response.read() or b"null")
            except urllib.error.HTTPError as error:
                if error.code < 500 or attempt == attempts - 1:
                    raise
                time.sleep(0.5 * 2**attempt)
        return None

    def dag_loaded(self, dag_id: str) -> bool:
        """Whether the dag-processor has parsed a DAG into the database."""
        try:
            self._request("GET", f"/api/v2/dags/{dag_id}")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return False
            raise
        return True

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Start a DAG run now; returns its run id."""
        run = self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """One DAG run."""
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")

    def upstream_events(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The Asset events that triggered a run (each names its source DAG and run)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/upstreamAssetEvents"
        return self._request("GET", path)["asset_events"]

    def run_caused_by(self, dag_id: str, source_dag: str, source_run: str) -> str | None:
        """The run of ``dag_id`` whose Asset events came from ``source_run``, whatever else is queued or running."""
        for run in self.runs(dag_id):
            if run["run_type"] != "asset_triggered":
                continue
            events = self.upstream_events(dag_id, run["dag_run_id"])
            if any(e.get("source_dag_id") == source_dag and e.get("source_run_id") == source_run for e in events):
                return run["dag_run_id"]
        return None

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Runs of a DAG, newest first."""
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=-run_after&limit=20")["dag_runs"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        """The text of one try's task log."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}?map_index={map_index}"
        content = self._request("GET", path).get("content") or []
        return "\n".join(_log_line(item) for item in (content if isinstance(content, list) else [content]))

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's XCom value, deserialized (the API may hand back JSON as a string)."""
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
            f"/taskInstances/{task_id}/xcomEntries/{key}"
        )
        value = self._request("GET", path)["value"]
        return json.loads(value) if isinstance(value, str) else value

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Task instances of one run (mapped instances included)."""
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")[
            "task_instances"
        ]


def _log_line(item: Any) -> str:
    """One structured log record as text; a failure's exception (type and message) is appended to its line."""
    if not isinstance(item, dict):
        return str(item)
    errors = item.get("error_detail") or []
    causes = [f"{e.get('exc_type', '')}: {e.get('exc_value', '')}" for e in errors if isinstance(e, dict)]
    return " | ".join([str(item.get("event", "")), *causes])
