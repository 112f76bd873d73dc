from __future__ import annotations

import pytest

from genai_pipeline.config import Settings


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Settings:
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
