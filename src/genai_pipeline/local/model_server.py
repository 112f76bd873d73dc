"""The local model server as a background service of the embedded default."""

from __future__ import annotations

import os
import sys

from genai_pipeline.config import Settings
from genai_pipeline.local.services import Services, answers


def start_model_server(settings: Settings, services: Services, env: dict[str, str] | None = None) -> int:
    """Start ``pipeline serve-models`` (same settings via env) and wait for ``/health``."""
    server = settings.model_server
    argv = [sys.executable, "-m", "genai_pipeline.cli", "serve-models"]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PIPELINE_HOME": str(settings.home), **(env or {})}
    return services.start(
        "model-server", argv, environment, lambda: answers(f"http://{server.host}:{server.port}/health")
    )
