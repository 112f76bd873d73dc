"""``POST /v1/embeddings``: the same :class:`LocalEmbedder` that ingestion runs in-process."""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from genai_pipeline.model_server.errors import APIError, not_found
from genai_pipeline.model_server.protocol import EmbeddingsRequest
from genai_pipeline.models.packaged import EMBEDDING_DIMENSIONS, EMBEDDING_MODEL

router = APIRouter()
MAX_INPUTS = 2048


@router.post("/v1/embeddings")
async def create_embeddings(body: EmbeddingsRequest, request: Request) -> dict[str, object]:
    """Embed one text or a list; vectors as floats or base64 float32, as the client asks."""
    if body.model != EMBEDDING_MODEL:
        raise not_found("model", body.model)
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or len(texts) > MAX_INPUTS or any(not t for t in texts):
        raise APIError(400, f"input must hold 1 to {MAX_INPUTS} non-empty strings", param="input")
    if body.dimensions not in (None, EMBEDDING_DIMENSIONS):
        raise APIError(400, f"{EMBEDDING_MODEL} has {EMBEDDING_DIMENSIONS} dimensions", param="dimensions")
    embedder = request.app.state.registry.embedder()
    vectors = await run_in_threadpool(embedder.embed, texts)
    tokens = await run_in_threadpool(embedder.count_tokens, texts)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ],
        "model": EMBEDDING_MODEL,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encode(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.tolist()
