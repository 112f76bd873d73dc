"""``POST /v1/chat/completions`` with the base chat model or a fine-tuned one."""

from __future__ import annotations

import secrets
import time

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from genai_pipeline.model_server.errors import APIError
from genai_pipeline.model_server.protocol import ChatRequest

router = APIRouter()
DEFAULT_MAX_TOKENS = 256


@router.post("/v1/chat/completions")
async def create_chat_completion(body: ChatRequest, request: Request) -> dict[str, object]:
    """One non-streamed choice; greedy decoding at temperature 0."""
    if body.stream:
        raise APIError(400, "stream=true is not supported by the local model server", param="stream")
    model = await run_in_threadpool(request.app.state.registry.chat_model, body.model)
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    completion = await run_in_threadpool(
        model.complete,
        messages,
        max_tokens=body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=stop,
        frequency_penalty=body.frequency_penalty,
        presence_penalty=body.presence_penalty,
        seed=body.seed,
    )
    return {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.text, "refusal": None},
                "finish_reason": completion.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
        },
    }
