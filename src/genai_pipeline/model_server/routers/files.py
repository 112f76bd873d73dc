"""``/v1/files``: upload, list, retrieve, download and delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

router = APIRouter()


@router.post("/v1/files")
async def create_file(
    request: Request, file: Annotated[UploadFile, File()], purpose: Annotated[str, Form()]
) -> dict[str, object]:
    """Store an upload (fine-tune files are checked line by line)."""
    data = await file.read()
    return request.app.state.files.create(file.filename or "upload.jsonl", purpose, data)


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
