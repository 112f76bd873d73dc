"""The local model server and the post-writing web page as background services of the embedded default."""

from __future__ import annotations

import os
import sys

from genai_pipeline.config import Settings
from genai_pipeline.local.services import Services, answers

WEB_PAGE = "web-page"


def _start_python_service(
    name: str, argv: list[str], health_url: str, settings: Settings, services: Services, env: dict[str, str] | None
) -> int:
    """Run ``python -m <argv>`` with the same settings (via env) and wait until ``health_url`` answers."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PIPELINE_HOME": str(settings.home), **(env or {})}
    return services.start(name, [sys.executable, "-m", *argv], environment, lambda: answers(health_url))


def start_model_server(settings: Settings, services: Services, env: dict[str, str] | None = None) -> int:
    """Start ``pipeline serve-models`` and wait for ``/health``."""
    server = settings.model_server
    argv = ["genai_pipeline.cli", "serve-models"]
    return _start_python_service(
        "model-server", argv, f"http://{server.host}:{server.port}/health", settings, services, env
    )


def start_web_page(settings: Settings, services: Services, port: int, env: dict[str, str] | None = None) -> int:
    """Start the web page (``genai_pipeline.web.app``) on 127.0.0.1:port and wait for ``/health``."""
    argv = ["genai_pipeline.web.app", "--host", "127.0.0.1", "--port", str(port)]
    return _start_python_service(WEB_PAGE, argv, f"http://127.0.0.1:{port}/health", settings, services, env)
