"""``/v1/files`` storage on disk: bytes plus a JSON record per file, within quotas; fine-tune files are validated."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from genai_pipeline.config import ModelServerSettings
from genai_pipeline.model_server.errors import APIError, not_found
from genai_pipeline.model_server.uploads import Upload
from genai_pipeline.steps.chat_jsonl import InvalidTrainingLine, iter_examples

PURPOSES = {"fine-tune", "fine-tune-results", "assistants", "batch", "user_data"}


class FileStore:
    """Files under ``<state>/files``; IDs look like the hosted API's (``file-…``).

    Uploads are staged under ``<state>/uploads`` while they arrive, then checked against the quotas and moved in.
    """

    def __init__(self, root: Path, settings: ModelServerSettings) -> None:
        self.root = root
        self.staging = root.parent / "uploads"
        self.settings = settings
        root.mkdir(parents=True, exist_ok=True)
        for leftover in self.staging.glob("*.partial"):  # uploads a crash interrupted
            leftover.unlink()
        self._lock = threading.Lock()

    def upload(self, upload: Upload) -> dict[str, Any]:
        """Store a staged upload after checking purpose, quotas and (for fine-tune) every JSONL line."""
        try:
            purpose = upload.fields.get("purpose", "")
            _check_purpose(purpose)
            if purpose == "fine-tune":
                with open(upload.path, "rb") as handle:
                    _check_training_lines(handle)
            record = _record(upload.filename, purpose, upload.size)
            with self._lock:
                self._check_quotas(upload.size)
                upload.path.replace(self._bytes_path(record["id"]))
                self._write_record(record)
            return record
        finally:
            upload.path.unlink(missing_ok=True)

    def create(self, filename: str, purpose: str, data: bytes) -> dict[str, Any]:
        """Store a file the server made itself (a job's results): no quota, it must not fail a finished job."""
        _check_purpose(purpose)
        record = _record(filename, purpose, len(data))
        with self._lock:
            self._bytes_path(record["id"]).write_bytes(data)
            self._write_record(record)
        return record

    def _check_quotas(self, size: int) -> None:
        """400 when one more file, or ``size`` more bytes, would pass the server's file quotas.

        400, not 429: waiting frees nothing (files must be deleted), and on a 429 the official client would send
        the whole upload again, up to its retry count.
        """
        stored = [path.stat().st_size for path in self.root.glob("file-*.bin")]
        delete = "; delete files you no longer need (DELETE /v1/files/{file_id})"
        if len(stored) >= self.settings.max_files:
            raise APIError(
                400,
                f"The server already stores {len(stored):,} files, its limit{delete}.",
                param="file",
                code="too_many_files",
            )
        if sum(stored) + size > self.settings.max_stored_bytes:
            raise APIError(
                400,
                f"Storing {size:,} more bytes would pass the limit of {self.settings.max_stored_bytes:,} bytes "
                f"for all files ({sum(stored):,} stored){delete}.",
                param="file",
                code="storage_limit_exceeded",
            )

    def _bytes_path(self, file_id: str) -> Path:
        return self.root / f"{file_id}.bin"

    def _write_record(self, record: dict[str, Any]) -> None:
        (self.root / f"{record['id']}.json").write_text(json.dumps(record))

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


def _check_purpose(purpose: str) -> None:
    """400 for a purpose the API does not know."""
    if purpose not in PURPOSES:
        raise APIError(400, f"Invalid purpose '{purpose}'; expected one of {sorted(PURPOSES)}", param="purpose")


def _check_training_lines(lines: Iterable[bytes]) -> None:
    """400 naming the first line that is not a chat example; the lines are read one at a time."""
    try:
        for _ in iter_examples(lines):
            pass
    except InvalidTrainingLine as error:
        raise APIError(
            400, f"Invalid file format for fine-tune: {error}", param="file", code="invalid_file_format"
        ) from None


def _record(filename: str, purpose: str, size: int) -> dict[str, Any]:
    """The file object the API answers with."""
    return {
        "id": f"file-{secrets.token_hex(12)}",
        "object": "file",
        "bytes": size,
        "created_at": int(time.time()),
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
        "status_details": None,
        "expires_at": None,
    }


def _safe(identifier: str) -> str:
    """IDs name files on disk: refuse anything that could leave the folder."""
    if not identifier.replace("-", "").replace("_", "").isalnum():
        raise not_found("file", identifier, param="file_id")
    return identifier
