"""``POST /v1/files`` bodies read in chunks straight to a file on disk, under a byte cap.

FastAPI's ``UploadFile`` spools the part to /tmp with no cap, and the route read it whole into memory (a 60 MB
upload took the server from 72 to 300 MB). Here the file's bytes go to a staging file in the state folder as
they arrive, and the request is refused (413) as soon as they pass the cap, or before a byte is read when
Content-Length already says more. A request holds one network chunk and the form's few small fields in memory.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from genai_pipeline.model_server.errors import APIError

# The form's other fields are a word each (``purpose``); a real client's framing around the file is a few
# hundred bytes, so a Content-Length this far over the cap cannot hold a file within it.
MAX_FIELD_BYTES = 1_024
MAX_PARTS = 8
FRAMING_BYTES = 65_536
FILE_FIELD = "file"


def too_large(limit: int, declared: int | None = None) -> APIError:
    """413 for a file over the cap, or a body that declares more than a file within it could take."""
    size = "over the limit" if declared is None else f"in a request of {declared:,} bytes"
    return APIError(413, f"File is {size}; the limit is {limit:,} bytes.", param="file", code="file_too_large")


@dataclass(frozen=True)
class Upload:
    """A received upload: the file staged at ``path`` (``size`` bytes) and the form's text fields."""

    filename: str
    path: Path
    size: int
    fields: dict[str, str]


class _Form:
    """python-multipart callbacks: the ``file`` part's bytes to ``target`` (capped), other parts into ``fields``."""

    def __init__(self, target: Path, max_bytes: int) -> None:
        self.target, self.max_bytes = target, max_bytes
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.size = 0
        self._parts = 0
        self._header, self._value, self._disposition = b"", b"", b""
        self._name = ""
        self._text = bytearray()
        self._file: BinaryIO | None = None
        self._in_file = False

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise APIError(400, f"The form may hold at most {MAX_PARTS} parts.", param="file")
        self._disposition, self._text = b"", bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition = self._value
        self._header, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        self._in_file = self._name == FILE_FIELD and filename is not None
        if self._in_file:
            if self._file is not None:
                raise APIError(400, "Send one file per request.", param="file")
            self.filename = filename.decode("utf-8", "replace")
            self._file = open(self.target, "wb")  # noqa: SIM115 - closed by close(), whatever the parse does

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._in_file:
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise too_large(self.max_bytes)
            self._file.write(chunk)
            return
        self._text += chunk
        if len(self._text) > MAX_FIELD_BYTES:
            raise APIError(400, f"Form field {self._name!r} is over {MAX_FIELD_BYTES} bytes.", param=self._name)

    def _part_end(self) -> None:
        if not self._in_file:
            self.fields[self._name] = self._text.decode("utf-8", "replace")
        self._in_file = False

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


async def receive_upload(request: Request, folder: Path, max_bytes: int) -> Upload:
    """Stage the request's ``file`` part in ``folder``; 413 past ``max_bytes``, 400 for a malformed form.

    The staged file is the caller's to move or delete; on any refusal here it is already gone.
    """
    content_type, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise APIError(400, "Expected a multipart/form-data body with a file and a purpose.", param="file")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + FRAMING_BYTES:
        raise too_large(max_bytes, int(declared))
    folder.mkdir(parents=True, exist_ok=True)
    form = _Form(folder / f"upload-{secrets.token_hex(12)}.partial", max_bytes)
    parser = MultipartParser(boundary, form.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except BaseException as error:
        form.close()
        form.target.unlink(missing_ok=True)
        if isinstance(error, MultipartParseError):
            raise APIError(400, f"Malformed multipart body: {error}", param="file") from None
        raise
    form.close()
    if form.filename is None:
        raise APIError(400, "The form has no file part named 'file'.", param="file")
    return Upload(form.filename, form.target, form.size, form.fields)
