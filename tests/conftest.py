"""Shared fixtures: a real Weaviate server on free ports and an isolated pipeline home per test."""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# Airflow reads its home at import: keep tests away from ~/airflow and from a developer's demo.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="pipeline-tests-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from genai_pipeline.config import Settings


@contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    """Set environment variables for a block, then restore what was there (or remove them)."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def weaviate_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real weaviate-server for the session; yields the PIPELINE_* variables that reach it.

    QUERY_MAXIMUM_RESULTS is set low (the iterator pages by 100) so tests prove deletes page past it.
    """
    from genai_pipeline.local.services import Services
    from genai_pipeline.local.weaviate_server import start_weaviate

    home = tmp_path_factory.mktemp("weaviate-home")
    env = {
        "PIPELINE_HOME": str(home),
        "PIPELINE_WEAVIATE__HTTP_PORT": str(free_port()),
        "PIPELINE_WEAVIATE__GRPC_PORT": str(free_port()),
    }
    services = Services(home)
    with environ({**env, "QUERY_MAXIMUM_RESULTS": "100"}):
        try:
            start_weaviate(Settings(), services)
            yield env
        finally:
            services.stop("weaviate")


@pytest.fixture
def settings_for(tmp_path: Path, weaviate_env: dict[str, str]):
    """Build Settings for a test: its own home and collection, the session's Weaviate."""

    def build(sources: dict[str, Path], **overrides: str) -> tuple[Settings, dict[str, str]]:
        env = {
            **weaviate_env,
            "PIPELINE_HOME": str(tmp_path / "home"),
            "PIPELINE_WEAVIATE__COLLECTION": f"Kb{abs(hash(tmp_path)) % 10**8}",
            "PIPELINE_INGEST__SOURCES": json.dumps({name: str(path) for name, path in sources.items()}),
            **overrides,
        }
        with environ(env):
            return Settings(), env

    return build


@pytest.fixture
def cluster_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Kubernetes-mode settings as the chart renders them, plus a key that must never reach a pod spec."""
    monkeypatch.setenv("PIPELINE_RUNTIME__MODE", "kubernetes")
    monkeypatch.setenv("PIPELINE_STORE_URI", "/data/store")
    monkeypatch.setenv("PIPELINE_RUNTIME__SHARED_VOLUME_CLAIM", "pipeline-data")
    monkeypatch.setenv("PIPELINE_RUNTIME__IMAGE_REGISTRY", "registry.local/genai")
    monkeypatch.setenv("PIPELINE_RUNTIME__IMAGE_TAG", "1.2.3")
    monkeypatch.setenv("PIPELINE_RUNTIME__NAMESPACE", "pipeline-ns")
    monkeypatch.setenv("PIPELINE_RUNTIME__XCOM_SIDECAR_IMAGE", "registry.local/genai/xcom-sidecar:1.2.3")
    monkeypatch.setenv("PIPELINE_OPENAI__API_KEY", "sk-must-not-leak")
    return Settings()
