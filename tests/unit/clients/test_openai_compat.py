from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from openai import AsyncOpenAI

from genai_pipeline.clients.openai_compat import (
    LOCAL_PLACEHOLDER_KEY,
    MissingSecretError,
    make_async_openai_client,
    make_openai_client,
)
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


def test_the_async_client_follows_the_same_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_OPENAI__BASE_URL", "https://api.openai.com/v1")
    monkeypatch.setenv("PIPELINE_OPENAI__MAX_RETRIES", "2")
    monkeypatch.setenv("PIPELINE_OPENAI__TIMEOUT_SECONDS", "9")
    with pytest.raises(MissingSecretError, match="PIPELINE_OPENAI__API_KEY is not set"):
        make_async_openai_client(Settings())
    monkeypatch.setenv("PIPELINE_OPENAI__API_KEY", "sk-test")
    client = make_async_openai_client(Settings())
    assert isinstance(client, AsyncOpenAI)
    assert str(client.base_url) == "https://api.openai.com/v1/"
    assert (client.api_key, client.max_retries, client.timeout) == ("sk-test", 2, 9)


@pytest.mark.parametrize(
    ("base_url", "hosted"),
    [
        ("https://api.openai.com/v1", True),
        ("https://api.together.xyz/v1", True),
        ("https://my-resource.openai.azure.com/openai", True),
        ("http://8.8.8.8:8000/v1", True),
        ("http://127.0.0.1:8088/v1", False),
        ("http://10.88.0.1:8088/v1", False),  # the model server on the node, seen from a pod
        ("http://genai-pipeline-model-server:8088/v1", False),
        ("http://vllm.ml.svc.cluster.local:8000/v1", False),
        ("http://vllm.internal:8000/v1", False),
        ("http://localhost:8000/v1", False),
    ],
)
def test_every_hosted_api_needs_a_key_before_the_first_call(
    monkeypatch: pytest.MonkeyPatch, base_url: str, hosted: bool
) -> None:
    monkeypatch.setenv("PIPELINE_OPENAI__BASE_URL", base_url)
    if hosted:
        with pytest.raises(MissingSecretError, match="PIPELINE_OPENAI__API_KEY is not set"):
            make_openai_client(Settings())
    else:
        assert make_openai_client(Settings()).api_key == LOCAL_PLACEHOLDER_KEY


class _Recorder(BaseHTTPRequestHandler):
    """A model server stand-in that answers /v1/models and keeps each request's Authorization header."""

    seen: list[str | None] = []

    def do_GET(self) -> None:
        _Recorder.seen.append(self.headers.get("Authorization"))
        body = b'{"object": "list", "data": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_client_sends_the_openai_key_to_the_model_server_at_its_base_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In the cluster the clients reach the model server at openai.base_url and send the key it requires.

    The chart gives the server and its clients the same Secret entry.
    """
    _Recorder.seen.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("PIPELINE_OPENAI__BASE_URL", f"http://127.0.0.1:{server.server_port}/v1")
        monkeypatch.setenv("PIPELINE_OPENAI__API_KEY", "sk-cluster-model-server")
        make_openai_client(Settings()).models.list()
    finally:
        server.shutdown()
        server.server_close()
    assert _Recorder.seen == ["Bearer sk-cluster-model-server"]


def test_the_model_servers_own_key_is_never_sent_by_a_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """PIPELINE_MODEL_SERVER__API_KEY is the server's setting: a client never picks it up.

    Least of all for a hosted third-party URL, where it fails for want of that provider's key instead.
    """
    monkeypatch.setenv("PIPELINE_MODEL_SERVER__API_KEY", "sk-model-server-only")
    monkeypatch.setenv("PIPELINE_OPENAI__BASE_URL", "https://api.together.xyz/v1")
    with pytest.raises(MissingSecretError, match="PIPELINE_OPENAI__API_KEY is not set"):
        make_openai_client(Settings())
    monkeypatch.setenv("PIPELINE_OPENAI__API_KEY", "sk-provider")
    for client in (make_openai_client(Settings()), make_async_openai_client(Settings())):
        assert client.auth_headers == {"Authorization": "Bearer sk-provider"}
    monkeypatch.delenv("PIPELINE_OPENAI__API_KEY")
    monkeypatch.delenv("PIPELINE_OPENAI__BASE_URL")
    assert make_openai_client(Settings()).api_key == LOCAL_PLACEHOLDER_KEY


class _BusyOnce(BaseHTTPRequestHandler):
    """An OpenAI-compatible embeddings endpoint that answers its first request 429 with Retry-After: 1.5."""

    calls: list[float] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        _BusyOnce.calls.append(time.monotonic())
        if len(_BusyOnce.calls) == 1:
            body, status = b'{"error": {"message": "slow down"}}', 429
        else:
            item = {"object": "embedding", "index": 0, "embedding": [0.0, 1.0]}
            usage = {"prompt_tokens": 1, "total_tokens": 1}
            body = json.dumps({"object": "list", "data": [item], "model": "m", "usage": usage}).encode()
            status = 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", "1.5")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_client_waits_out_a_429s_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """The factory's client retries a 429 after the server's Retry-After, not after its own shorter backoff."""
    _BusyOnce.calls.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BusyOnce)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("PIPELINE_OPENAI__BASE_URL", f"http://127.0.0.1:{server.server_port}/v1")
        client = make_openai_client(Settings())
        assert client.embeddings.create(model="m", input="x").data[0].embedding == [0.0, 1.0]
    finally:
        server.shutdown()
        server.server_close()
    first, second = _BusyOnce.calls
    assert second - first >= 1.5
