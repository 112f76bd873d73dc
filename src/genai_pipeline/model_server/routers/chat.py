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
    limits = request.app.state.settings.model_server
    max_tokens = body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS
    if max_tokens > limits.max_completion_tokens:
        param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        raise APIError(
            400,
            f"{param} is too large: {max_tokens}. This server supports at most {limits.max_completion_tokens} "
            "completion tokens (PIPELINE_MODEL_SERVER__MAX_COMPLETION_TOKENS).",
            param=param,
            code="invalid_value",
        )
    model = await run_in_threadpool(request.app.state.registry.chat_model, body.model)
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    ids = await run_in_threadpool(model.prompt_ids, messages)
    _check_context(len(ids), max_tokens, model.context_length, limits.max_prompt_tokens)
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    completion = await run_in_threadpool(
        model.complete,
        ids,
        max_tokens=max_tokens,
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


def _check_context(prompt_tokens: int, max_tokens: int, context: int, max_prompt_tokens: int) -> None:
    """400 (``context_length_exceeded``, as the hosted API says it) for a prompt the server will not run.

    The prompt may take up to ``max_prompt_tokens``, and prompt plus completion the model's context.
    """
    if prompt_tokens > max_prompt_tokens:
        message = (
            f"This server accepts prompts of at most {max_prompt_tokens} tokens "
            f"(PIPELINE_MODEL_SERVER__MAX_PROMPT_TOKENS). However, your messages resulted in {prompt_tokens} tokens. "
            "Please reduce the length of the messages."
        )
    elif prompt_tokens + max_tokens > context:
        message = (
            f"This model's maximum context length is {context} tokens. However, you requested "
            f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the completion). "
            "Please reduce the length of the messages or completion."
        )
    else:
        return
    raise APIError(400, message, param="messages", code="context_length_exceeded")
