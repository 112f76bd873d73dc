"""``GET /v1/models`` and ``GET /v1/models/{id}``."""

from __future__ import annotations

from fastapi import APIRouter, Request

from genai_pipeline.model_server.errors import not_found

router = APIRouter()


def _model(model_id: str, owner: str, created: int = 0) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owner}


@router.get("/v1/models")
def list_models(request: Request) -> dict[str, object]:
    """Embedding model, base chat model and every fine-tuned model."""
    registry = request.app.state.registry
    return {"object": "list", "data": [_model(m, owner) for m, owner in registry.available().items()]}


@router.get("/v1/models/{model_id:path}")
def retrieve_model(model_id: str, request: Request) -> dict[str, object]:
    """One model, or 404."""
    owner = request.app.state.registry.available().get(model_id)
    if owner is None:
        raise not_found("model", model_id)
    return _model(model_id, owner)
