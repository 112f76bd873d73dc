"""``/v1/files`` storage on disk: bytes plus a JSON record per file; fine-tune files are validated on upload."""

from __future__ import annotations

import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from genai_pipeline.model_server.errors import APIError, not_found
from genai_pipeline.steps.chat_jsonl import InvalidTrainingLine, parse_chat_jsonl

PURPOSES = {"fine-tune", "fine-tune-results", "assistants", "batch", "user_data"}


class FileStore:
    """Files under ``<state>/files``; IDs look like the hosted API's (``file-…``)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def create(self, filename: str, purpose: str, data: bytes) -> dict[str, Any]:
        """Store an upload after checking purpose, size and (for fine-tune) every JSONL line."""
        if purpose not in PURPOSES:
            raise APIError(400, f"Invalid purpose '{purpose}'; expected one of {sorted(PURPOSES)}", param="purpose")
        if len(data) > self.max_bytes:
            raise APIError(
                413,
                f"File is {len(data):,} bytes; the limit is {self.max_bytes:,} bytes.",
                param="file",
                code="file_too_large",
            )
        if purpose == "fine-tune":
            try:
                parse_chat_jsonl(data)
            except InvalidTrainingLine as error:
                raise APIError(
                    400, f"Invalid file format for fine-tune: {error}", param="file", code="invalid_file_format"
                ) from None
        record = {
            "id": f"file-{secrets.token_hex(12)}",
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": None,
        }
        with self._lock:
            (self.root / f"{record['id']}.bin").write_bytes(data)
            (self.root / f"{record['id']}.json").write_text(json.dumps(record))
        return record

    def get(self, file_id: str) -> dict[str, Any]:
        """The record of one file, or 404."""
        path = self.root / f"{_safe(file_id)}.json"
        if not path.is_file():
            raise not_found("file", file_id, param="file_id")
        return json.loads(path.read_text())

    def content(self, file_id: str) -> bytes:
        """The stored bytes, or 404."""
        self.get(file_id)
        return (self.root / f"{_safe(file_id)}.bin").read_bytes()

    def list(self, purpose: str | None = None) -> list[dict[str, Any]]:
        """All files, newest first."""
        records = [json.loads(p.read_text()) for p in self.root.glob("file-*.json")]
        records = [r for r in records if purpose is None or r["purpose"] == purpose]
        return sorted(records, key=lambda r: (r["created_at"], r["id"]), reverse=True)

    def delete(self, file_id: str) -> dict[str, Any]:
        """Remove a file; answers like the API's deletion object."""
        self.get(file_id)
        with self._lock:
            for suffix in (".bin", ".json"):
                (self.root / f"{_safe(file_id)}{suffix}").unlink(missing_ok=True)
        return {"id": file_id, "object": "file", "deleted": True}


def _safe(identifier: str) -> str:
    """IDs name files on disk: refuse anything that could leave the folder."""
    if not identifier.replace("-", "").replace("_", "").isalnum():
        raise not_found("file", identifier, param="file_id")
    return identifier
