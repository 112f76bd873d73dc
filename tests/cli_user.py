"""A user of the command line in tests: a fresh home on free ports, a `pipeline` command, what it left running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

from conftest import free_port


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """A fresh pipeline home on free ports, as a second user on the same machine would have."""
    return {
        **os.environ,
        "PIPELINE_HOME": str(home),
        "PIPELINE_WEAVIATE__HTTP_PORT": str(free_port()),
        "PIPELINE_WEAVIATE__GRPC_PORT": str(free_port()),
        "PIPELINE_MODEL_SERVER__PORT": str(free_port()),
        **extra,
    }


def pipeline(*args: str, env: dict[str, str], prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    cli = [sys.executable, "-m", "genai_pipeline.cli", *args, "--api-port", env["API_PORT"], "--timeout", "600"]
    return subprocess.run(
        [*(prefix or []), *cli],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def leftovers(home: Path) -> list[str]:
    """Processes still running with this home in their environment: services, workers, task processes."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if process.environ().get("PIPELINE_HOME") == str(home):
                found.append(" ".join(process.info["cmdline"] or [])[:120])
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found
