"""``/v1/files``: upload, list, retrieve, download and delete."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from genai_pipeline.model_server.uploads import receive_upload

router = APIRouter()


@router.post("/v1/files")
async def create_file(request: Request) -> dict[str, object]:
    """Store a multipart upload (``file`` and ``purpose``), streamed to disk under the size cap."""
    files = request.app.state.files
    upload = await receive_upload(request, files.staging, files.settings.max_file_bytes)
    return await run_in_threadpool(files.upload, upload)


@router.get("/v1/files")
def list_files(request: Request, purpose: str | None = None) -> dict[str, object]:
    """Every stored file, newest first."""
    return {"object": "list", "data": request.app.state.files.list(purpose), "has_more": False}


@router.get("/v1/files/{file_id}")
def retrieve_file(file_id: str, request: Request) -> dict[str, object]:
    """One file's record."""
    return request.app.state.files.get(file_id)


@router.get("/v1/files/{file_id}/content")
def file_content(file_id: str, request: Request) -> Response:
    """The stored bytes."""
    return Response(request.app.state.files.content(file_id), media_type="application/octet-stream")


@router.delete("/v1/files/{file_id}")
def delete_file(file_id: str, request: Request) -> dict[str, object]:
    """Delete a file."""
    return request.app.state.files.delete(file_id)
