"""The local stack's Airflow: SQLite's lock waited for, not failed on; a new home's database copied, not migrated."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from genai_pipeline.config import Settings
from genai_pipeline.local import airflow_env as airflow_env_module
from genai_pipeline.local.airflow_env import airflow_env, migrate

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


FAKE_AIRFLOW = """#!/bin/sh
# `airflow db migrate` as far as the database file goes: each call is counted and leaves a marked file.
echo "$AIRFLOW_HOME" >> "$CALLS"
echo "migrated in $AIRFLOW_HOME" > "$AIRFLOW_HOME/airflow.db"
"""


def test_a_new_home_copies_a_database_migrated_once_and_an_existing_one_is_migrated_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "airflow"
    fake.write_text(FAKE_AIRFLOW)
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    monkeypatch.setenv("CALLS", str(calls))
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
    monkeypatch.setattr(airflow_env_module, "airflow_bin", lambda: str(fake))
    first, second = (Settings(home=tmp_path / name, cache_dir=tmp_path / "cache") for name in ("first", "second"))

    migrate(first)
    migrate(second)  # no second migration: a copy of the first
    assert len(calls.read_text().splitlines()) == 1
    template = (first.home / "airflow" / "airflow.db").read_text()
    assert (second.home / "airflow" / "airflow.db").read_text() == template and "migrated in" in template
    assert [p.name for p in (first.cache_dir / "airflow-db").iterdir()] == [f"airflow-{version('apache-airflow')}.db"]

    migrate(second)  # a home that has its database: `airflow db migrate` upgrades it where it is
    assert calls.read_text().splitlines()[-1] == str(second.home / "airflow")

    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql://airflow@db/airflow")
    third = Settings(home=tmp_path / "third", cache_dir=tmp_path / "cache")
    migrate(third)  # another database: migrated there, never a SQLite copy
    assert calls.read_text().splitlines()[-1] == str(third.home / "airflow")
