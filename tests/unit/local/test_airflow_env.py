"""The local stack's Airflow waits for SQLite's write lock instead of failing the request that met it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from genai_pipeline.config import Settings
from genai_pipeline.local.airflow_env import airflow_env

BUSY_TIMEOUT = """
import asyncio

from airflow import settings

with settings.engine.connect() as connection:
    print("busy_timeout", connection.exec_driver_sql("PRAGMA busy_timeout").scalar())


async def read_async() -> None:
    async with settings.async_engine.connect() as connection:
        print("busy_timeout", (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar())
    await settings.async_engine.dispose()


asyncio.run(read_async())
"""


def test_every_component_waits_30_seconds_for_a_locked_metadata_database(tmp_path: Path) -> None:
    env = airflow_env(Settings(home=tmp_path))
    shown = subprocess.run([sys.executable, "-c", BUSY_TIMEOUT], env=env, capture_output=True, text=True, check=True)
    # Milliseconds, for the engine of the scheduler and writes, then the API server's async one for reads.
    # SQLite's default through Python is 5000.
    timeouts = [line.split()[1] for line in shown.stdout.splitlines() if line.startswith("busy_timeout ")]
    assert timeouts == ["30000", "30000"]
