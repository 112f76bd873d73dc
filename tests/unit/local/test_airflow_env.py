"""The local stack's Airflow waits for SQLite's write lock instead of failing the request that met it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from genai_pipeline.config import Settings
from genai_pipeline.local.airflow_env import airflow_env

BUSY_TIMEOUT = """
from airflow import settings
with settings.engine.connect() as connection:
    print(connection.exec_driver_sql("PRAGMA busy_timeout").scalar())
"""


def test_every_component_waits_30_seconds_for_a_locked_metadata_database(tmp_path: Path) -> None:
    env = airflow_env(Settings(home=tmp_path))
    shown = subprocess.run([sys.executable, "-c", BUSY_TIMEOUT], env=env, capture_output=True, text=True, check=True)
    assert shown.stdout.split()[-1] == "30000"  # milliseconds; SQLite's default through Python is 5000
