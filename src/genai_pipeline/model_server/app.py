"""The local OpenAI-compatible model server: ``create_app(settings)`` builds it with its state.

Real models and real files: embeddings from the packaged MiniLM (the ingestion step's own code), chat from
SmolLM2-135M-Instruct (or the user's own model) or a model a fine-tuning job produced, files and jobs on disk.
Optional API-key auth and injected 429/500 faults make it a stand-in for the hosted API in reliability tests.
"""

from __future__ import annotations

import random
import secrets
import threading

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from genai_pipeline.config import Settings
from genai_pipeline.model_server.errors import APIError, api_error_handler, validation_error_handler
from genai_pipeline.model_server.files import FileStore
from genai_pipeline.model_server.jobs import FineTuningService
from genai_pipeline.model_server.registry import ModelRegistry
from genai_pipeline.model_server.retention import store_champion
from genai_pipeline.model_server.routers import chat, embeddings, files, fine_tuning, models


class Faults:
    """Decides, per request, whether to answer 429 or 500 instead (seeded, so tests are repeatable)."""

    def __init__(
        self, rate_429: float, rate_500: float, retry_after: float, seed: int | None, lost_job_responses: int = 0
    ) -> None:
        self.rate_429, self.rate_500, self.retry_after = rate_429, rate_500, retry_after
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._lost_left = lost_job_responses
        self.injected = {"429": 0, "500": 0, "lost_job_response": 0}

    def lose_job_response(self) -> bool:
        """Whether to answer a job creation that succeeded with a 500 (N times, then never)."""
        with self._lock:
            if self._lost_left <= 0:
                return False
            self._lost_left -= 1
            self.injected["lost_job_response"] += 1
            return True

    def draw(self) -> APIError | None:
        """The fault to answer with, if any."""
        with self._lock:
            roll = self._random.random()
            if roll < self.rate_429:
                self.injected["429"] += 1
                return APIError(
                    429,
                    "Rate limit reached (fault injected by the local model server).",
                    type="requests",
                    code="rate_limit_exceeded",
                    headers={"Retry-After": f"{self.retry_after:g}"},
                )
            if roll < self.rate_429 + self.rate_500:
                self.injected["500"] += 1
                return APIError(500, "The server had an error (fault injected).", type="server_error")
        return None


def create_app(settings: Settings) -> FastAPI:
    """Build the app and its state (files, jobs, models) under ``settings.model_server_dir``."""
    app = FastAPI(title="genai-pipeline local model server", version="1")
    app.state.settings = settings
    server = settings.model_server
    state = settings.model_server_dir
    app.state.files = FileStore(state / "files", server)
    app.state.registry = ModelRegistry(settings, lambda: app.state.jobs.fine_tuned_models())
    registry = app.state.registry
    app.state.jobs = FineTuningService(
        state,
        app.state.files,
        server,
        {registry.base_model: registry.base_checkpoint},
        champion=lambda: store_champion(settings),
    )
    app.state.faults = Faults(
        server.fault_rate_429,
        server.fault_rate_500,
        server.fault_retry_after_seconds,
        server.fault_seed,
        server.fault_lost_job_responses,
    )
    api_key = server.api_key.get_secret_value() if server.api_key else None

    @app.middleware("http")
    async def guard(request: Request, call_next):
        """Auth first (401 like the hosted API), then faults on demand; /health is exempt from both."""
        if request.url.path.startswith("/v1/"):
            if api_key is not None:
                sent = request.headers.get("authorization", "")
                if not secrets.compare_digest(sent, f"Bearer {api_key}"):
                    return APIError(401, "Incorrect API key provided.", code="invalid_api_key").response()
            fault = app.state.faults.draw()
            if fault is not None:
                return fault.response()
        return await call_next(request)

    @app.get("/health")
    def health() -> JSONResponse:
        """Liveness, and how many faults were injected so far."""
        return JSONResponse({"status": "ok", "faults_injected": app.state.faults.injected})

    app.add_exception_handler(APIError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    for module in (models, embeddings, chat, files, fine_tuning):
        app.include_router(module.router)
    return app
