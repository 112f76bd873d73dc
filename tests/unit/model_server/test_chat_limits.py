"""Chat completions: how many tokens a request may ask for and send, answered as the hosted API answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

# The tiny model's prompt for 100 bytes of text: a token per byte, 19 for the chat template.
PROMPT, PROMPT_TOKENS = "x" * 100, 119


def chat(client: TestClient, content: str, **options: Any) -> Any:
    body = {"model": "tiny-chat", "messages": [{"role": "user", "content": content}], **options}
    return client.post("/v1/chat/completions", json=body)


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
def test_more_completion_tokens_than_the_server_allows_are_refused(
    tiny_server: Callable[..., TestClient], param: str
) -> None:
    client = tiny_server(max_completion_tokens=32)
    assert chat(client, "hi", **{param: 32}).status_code == 200
    refused = chat(client, "hi", **{param: 33})
    assert refused.status_code == 400
    assert refused.json()["error"] == {
        "message": f"{param} is too large: 33. This server supports at most 32 completion tokens "
        "(PIPELINE_MODEL_SERVER__MAX_COMPLETION_TOKENS).",
        "type": "invalid_request_error",
        "param": param,
        "code": "invalid_value",
    }


def test_a_prompt_over_the_server_s_limit_is_refused_before_generation(tiny_server: Callable[..., TestClient]) -> None:
    client = tiny_server(max_prompt_tokens=64)
    refused = chat(client, PROMPT, max_tokens=4)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["param"], error["code"]) == ("messages", "context_length_exceeded")
    assert "at most 64 tokens" in error["message"] and f"resulted in {PROMPT_TOKENS} tokens" in error["message"]


def test_prompt_and_completion_must_fit_the_model_s_context(
    tiny_server: Callable[..., TestClient], tiny_context: int
) -> None:
    client = tiny_server()
    assert chat(client, PROMPT, max_tokens=tiny_context - PROMPT_TOKENS).status_code == 200
    refused = chat(client, PROMPT, max_tokens=tiny_context - PROMPT_TOKENS + 1)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "context_length_exceeded"
    assert f"maximum context length is {tiny_context} tokens" in refused.json()["error"]["message"]
