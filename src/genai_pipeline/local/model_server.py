"""The local model server as a background service of the embedded default."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

from genai_pipeline.config import Settings
from genai_pipeline.local.services import Services


def server_ready(host: str, port: int) -> bool:
    """Whether the server answers ``/health``."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_model_server(settings: Settings, services: Services, env: dict[str, str] | None = None) -> int:
    """Start ``pipeline serve-models`` (same settings via env) and wait for ``/health``."""
    server = settings.model_server
    argv = [sys.executable, "-m", "genai_pipeline.cli", "serve-models"]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PIPELINE_HOME": str(settings.home), **(env or {})}
    return services.start("model-server", argv, environment, lambda: server_ready(server.host, server.port))
