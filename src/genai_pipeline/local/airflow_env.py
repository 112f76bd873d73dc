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
import tempfile
from importlib.metadata import version
from pathlib import Path

from genai_pipeline.config import Settings
from genai_pipeline.local.services import Services, answers

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
SERVICE_NAMES = tuple(f"airflow-{component}" for component in COMPONENTS)
# The step tasks' OpenLineage extractor (named, not imported: this module must not import Airflow).
LINEAGE_EXTRACTOR = "genai_pipeline.orchestration.lineage.StepLineageExtractor"
# SQLite waits this long for another component's write lock before "database is locked" (Python's default is
# 5 s; on a busy two-core machine the scheduler can hold it longer). Airflow imports it by path, for its
# sync engine (scheduler, writes) and the API server's async one (reads).
SQLITE_CONNECT_ARGS = {"timeout": 30}


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
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": f"{__name__}.SQLITE_CONNECT_ARGS",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": f"{__name__}.SQLITE_CONNECT_ARGS",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        # An edited DAG file is parsed again at the next refresh (modified_time: a file changed since its last
        # parse skips the interval); an unchanged one every 10 minutes, not Airflow's 30 s. Re-parsing the seven
        # unchanged files every 30 s cost an idle stack's dag-processor 7.4 s of CPU in 2 minutes; now 0.8 s.
        "AIRFLOW__DAG_PROCESSOR__FILE_PARSING_SORT_MODE": "modified_time",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        # One local worker slot per core; the embedding step already uses every core it gets.
        "AIRFLOW__CORE__PARALLELISM": str(max(os.cpu_count() or 2, 2)),
        "PIPELINE_HOME": str(settings.home),
        "PIPELINE_CACHE_DIR": str(settings.cache_dir),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "NO_PROXY": "127.0.0.1,localhost",
        **openlineage_env(settings),
    }


def openlineage_env(settings: Settings) -> dict[str, str]:
    """Airflow's ``[openlineage]`` settings from the pipeline's: every step task's event, with its datasets.

    Without a configured transport each event is one JSON file under ``<home>/lineage`` (``pipeline lineage``
    reads them). Emission runs in a thread of the task process, where the extractor can read the step's XCom.
    """
    lineage = settings.lineage
    if not lineage.enabled:
        return {"AIRFLOW__OPENLINEAGE__DISABLED": "True"}
    transport = lineage.transport or {"type": "file", "log_file_path": str(settings.lineage_dir / "event")}
    return {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": lineage.namespace,
        "AIRFLOW__OPENLINEAGE__EXTRACTORS": LINEAGE_EXTRACTOR,
        "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True",
    }


def airflow_bin() -> str:
    """The ``airflow`` executable of this environment."""
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else (shutil.which("airflow") or "airflow")


def migrate(settings: Settings) -> None:
    """Create or upgrade the metadata database (SQLite under the home).

    A new home gets a copy of a database migrated once per Airflow version on this machine: ``airflow db
    migrate`` from nothing takes half a minute of CPU, and every new home (a second user, each test's stack)
    paid it. An existing database, or one the environment points elsewhere (PostgreSQL), is migrated in place.
    """
    home = settings.home / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    settings.lineage_dir.mkdir(parents=True, exist_ok=True)
    database = home / "airflow.db"
    if not database.exists() and not os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        shutil.copyfile(migrated_template(settings), database)
        return
    subprocess.run([airflow_bin(), "db", "migrate"], env=airflow_env(settings), check=True, capture_output=True)


def migrated_template(settings: Settings) -> Path:
    """An empty metadata database at the installed Airflow's head revision, made once under the cache.

    Made in a folder of its own and renamed into place, so two processes making it at once both succeed.
    """
    template = settings.cache_dir / "airflow-db" / f"airflow-{version('apache-airflow')}.db"
    if template.exists():
        return template
    template.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=template.parent) as scratch:
        env = {**airflow_env(settings), "AIRFLOW_HOME": scratch}
        subprocess.run([airflow_bin(), "db", "migrate"], env=env, check=True, capture_output=True)
        os.replace(Path(scratch) / "airflow.db", template)
    return template


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
    """Stop every component, and the task processes they started, together."""
    services.stop_all(SERVICE_NAMES)
