"""``/v1/fine_tuning/jobs``: create, list, retrieve, events and cancel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from genai_pipeline.model_server.errors import APIError
from genai_pipeline.model_server.protocol import FineTuningJobRequest

router = APIRouter()


def _page(items: list[dict[str, Any]], limit: int, after: str | None) -> dict[str, Any]:
    """Cursor pagination as the API does it: items after the ``after`` id, ``has_more`` beyond ``limit``."""
    if after:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}


@router.post("/v1/fine_tuning/jobs")
def create_job(body: FineTuningJobRequest, request: Request) -> dict[str, Any]:
    """Create a job; it validates its files, queues, then trains."""
    job = request.app.state.jobs.create(body.model_dump())
    if request.app.state.faults.lose_job_response():
        raise APIError(500, "The server had an error (fault injected after the job was created).", type="server_error")
    return job


@router.get("/v1/fine_tuning/jobs")
def list_jobs(request: Request, limit: int = 20, after: str | None = None) -> dict[str, Any]:
    """Jobs, newest first."""
    return _page(request.app.state.jobs.list(), limit, after)


@router.get("/v1/fine_tuning/jobs/{job_id}")
def retrieve_job(job_id: str, request: Request) -> dict[str, Any]:
    """One job."""
    return request.app.state.jobs.get(job_id)


@router.get("/v1/fine_tuning/jobs/{job_id}/events")
def list_events(job_id: str, request: Request, limit: int = 20, after: str | None = None) -> dict[str, Any]:
    """A job's events, newest first."""
    return _page(request.app.state.jobs.events(job_id), limit, after)


@router.post("/v1/fine_tuning/jobs/{job_id}/cancel")
def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
    """Cancel a job that has not finished."""
    return request.app.state.jobs.cancel(job_id)
