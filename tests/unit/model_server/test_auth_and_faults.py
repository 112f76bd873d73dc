"""The server's API key, its injected faults and a missing base model, driven in-process by the official client.

The official ``openai`` client talks to the app through FastAPI's TestClient (an httpx client), so these need
no server process; the integration tests start the real one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import openai
import pytest
from fastapi.testclient import TestClient

from genai_pipeline.config import ModelServerSettings, Settings
from genai_pipeline.model_server.app import create_app
from genai_pipeline.models.embeddings import OpenAIEmbedder

EMBEDDING = "all-MiniLM-L6-v2"


def official(app: TestClient, key: str = "unused", retries: int = 0) -> openai.OpenAI:
    """The official client, its requests served by the app in this process."""
    return openai.OpenAI(base_url="http://testserver/v1", api_key=key, max_retries=retries, http_client=app)


def test_a_configured_api_key_is_required(tiny_server: Callable[..., TestClient]) -> None:
    app = tiny_server(api_key="sk-local-test")
    refused = app.get("/v1/models")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        official(app, "sk-wrong").models.list()
    assert official(app, "sk-local-test").models.list().data


def test_injected_faults_are_survived_by_client_backoff(tiny_server: Callable[..., TestClient]) -> None:
    app = tiny_server(fault_rate_429=0.3, fault_rate_500=0.2, fault_retry_after_seconds=0.1, fault_seed=3)
    fragile = official(app)
    outcomes = []
    for _ in range(20):
        try:
            fragile.embeddings.create(model=EMBEDDING, input="x")
            outcomes.append("ok")
        except openai.RateLimitError as error:
            assert error.response.headers["retry-after"] == "0.1"
            outcomes.append("429")
        except openai.InternalServerError:
            outcomes.append("500")
    assert {"ok", "429", "500"} <= set(outcomes)

    embedder = OpenAIEmbedder(official(app, retries=10), EMBEDDING, batch_size=1)
    assert embedder.embed([f"text {i}" for i in range(20)]).shape == (20, 384)
    injected = app.get("/health").json()["faults_injected"]
    assert injected["429"] + injected["500"] > outcomes.count("429") + outcomes.count("500")


def test_a_missing_gguf_file_is_named_in_the_error(tmp_path: Path) -> None:
    missing = tmp_path / "Qwen2.5-1.5B-Instruct-Q4_K_M.gguf"
    settings = Settings(home=tmp_path, model_server=ModelServerSettings(chat_model_gguf=missing))
    chat = {"model": missing.stem, "messages": [{"role": "user", "content": "hi"}]}
    with TestClient(create_app(settings)) as app, pytest.raises(openai.InternalServerError, match="not exist") as error:
        official(app).chat.completions.create(**chat)
    assert error.value.code == "model_unavailable" and str(missing) in error.value.message
