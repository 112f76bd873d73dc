"""The README's demo command: real scheduler, Asset events from `start` trigger ingestion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_port
from genai_pipeline.store import Store

pytestmark = pytest.mark.integration


def test_demo_runs_ingestion_from_the_start_dag_asset_events(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {
        **os.environ,
        "PIPELINE_HOME": str(home),
        "PIPELINE_WEAVIATE__HTTP_PORT": str(free_port()),
        "PIPELINE_WEAVIATE__GRPC_PORT": str(free_port()),
        "PIPELINE_MODEL_SERVER__PORT": str(free_port()),
    }
    api_port = str(free_port())
    result = subprocess.run(
        [sys.executable, "-m", "genai_pipeline.cli", "demo", "--api-port", api_port, "--timeout", "600"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Ingestion run asset_triggered__" in result.stdout
    assert "ingested         8" in result.stdout
    summary = Store(str(home / "store")).read_json("reports/ingest/latest.json")
    assert summary["run_key"].startswith("asset_triggered__") and summary["chunks"] > 50
    assert not list((home / "run").glob("*.pid"))  # every service it started was stopped
