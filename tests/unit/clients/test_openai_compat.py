from __future__ import annotations

import pytest

from genai_pipeline.clients.openai_compat import LOCAL_PLACEHOLDER_KEY, MissingSecretError, make_openai_client
from genai_pipeline.config import Settings


def test_without_a_base_url_the_local_model_server_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_MODEL_SERVER__PORT", "8123")
    client = make_openai_client(Settings())
    assert str(client.base_url) == "http://127.0.0.1:8123/v1/"
    assert client.api_key == LOCAL_PLACEHOLDER_KEY


def test_retries_and_timeout_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_OPENAI__BASE_URL", "http://vllm.internal:8000/v1")
    monkeypatch.setenv("PIPELINE_OPENAI__MAX_RETRIES", "7")
    monkeypatch.setenv("PIPELINE_OPENAI__TIMEOUT_SECONDS", "33")
    client = make_openai_client(Settings())
    assert client.max_retries == 7 and client.timeout == 33


def test_a_hosted_api_without_its_key_fails_naming_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_OPENAI__BASE_URL", "https://api.openai.com/v1")
    with pytest.raises(MissingSecretError, match="PIPELINE_OPENAI__API_KEY is not set") as error:
        make_openai_client(Settings())
    assert "genai-pipeline-secrets" in str(error.value)
    monkeypatch.setenv("PIPELINE_OPENAI__API_KEY", "sk-test")
    assert make_openai_client(Settings()).api_key == "sk-test"
