"""Uploads: streamed under the size cap with bounded memory, and refused past the file quotas."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from genai_pipeline.model_server.uploads import FRAMING_BYTES

CHUNK = 65_536
BOUNDARY = "test-boundary"
GOOD_LINE = b'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'


def upload(client: TestClient, data: bytes, purpose: str = "user_data") -> httpx.Response:
    """POST /v1/files as the official client sends it."""
    return client.post("/v1/files", files={"file": ("data.jsonl", data)}, data={"purpose": purpose})


class Sender:
    """A multipart body of ``size`` file bytes, sent a chunk at a time; counts what the server pulled."""

    def __init__(self, size: int) -> None:
        self.size, self.sent = size, 0

    async def body(self) -> AsyncIterator[bytes]:
        yield (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
        ).encode()
        for offset in range(0, self.size, CHUNK):
            chunk = b"x" * min(CHUNK, self.size - offset)
            self.sent += len(chunk)
            yield chunk
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    def post(self, client: TestClient, **headers: str) -> httpx.Response:
        """Send through the ASGI app itself: httpx's ASGI transport hands the body over as the app reads it."""

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=client.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://server") as http:
                content_type = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
                return await http.post("/v1/files", content=self.body(), headers={**content_type, **headers})

        return asyncio.run(send())


def stored(home: Path) -> list[Path]:
    """Every file the server keeps, staged or stored."""
    return [path for path in (home / "model-server").rglob("*") if path.is_file() and "jobs" not in path.parts]


def test_an_upload_is_refused_413_as_soon_as_it_passes_the_cap_and_nothing_is_kept(
    tiny_server: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = tiny_server(max_file_bytes=1_000_000)
    sender = Sender(20_000_000)
    answer = sender.post(client)
    assert answer.status_code == 413
    assert answer.json()["error"] == {
        "message": "File is over the limit; the limit is 1,000,000 bytes.",
        "type": "invalid_request_error",
        "param": "file",
        "code": "file_too_large",
    }
    assert sender.sent <= 1_000_000 + CHUNK  # the other 19 MB were never read
    assert stored(tmp_path) == []


def test_a_declared_length_over_the_cap_is_refused_before_the_body_is_read(
    tiny_server: Callable[..., TestClient],
) -> None:
    client = tiny_server(max_file_bytes=1_000_000)
    sender = Sender(20_000_000)
    answer = sender.post(client, **{"content-length": str(20_000_000 + FRAMING_BYTES)})
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "file_too_large"
    assert "request of 20,065,536 bytes" in answer.json()["error"]["message"]
    assert sender.sent == 0


def test_a_large_upload_within_the_cap_is_stored_in_bounded_memory(
    tiny_server: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = tiny_server()
    sender = Sender(20_000_000)
    tracemalloc.start()
    try:
        answer = sender.post(client)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status_code == 200 and answer.json()["bytes"] == 20_000_000
    assert peak < 4_000_000, f"{peak:,} bytes allocated at the peak for a 20 MB upload"
    assert client.get(f"/v1/files/{answer.json()['id']}").json()["bytes"] == 20_000_000
    assert not list((tmp_path / "model-server" / "uploads").iterdir())


def test_a_fine_tune_file_is_checked_line_by_line_after_streaming(tiny_server: Callable[..., TestClient]) -> None:
    client = tiny_server()
    answer = upload(client, GOOD_LINE * 3 + b'{"messages": [\n', purpose="fine-tune")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_file_format"
    assert "line 4: not valid JSON" in answer.json()["error"]["message"]
    stored_file = upload(client, GOOD_LINE * 3, purpose="fine-tune").json()
    assert client.get(f"/v1/files/{stored_file['id']}/content").content == GOOD_LINE * 3


def test_uploads_past_the_file_count_are_refused_until_one_is_deleted(tiny_server: Callable[..., TestClient]) -> None:
    client = tiny_server(max_files=2)
    first, _ = (upload(client, b"one").json(), upload(client, b"two").json())
    refused = upload(client, b"three")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "too_many_files" and refused.json()["error"]["param"] == "file"
    assert "DELETE /v1/files" in refused.json()["error"]["message"]
    client.delete(f"/v1/files/{first['id']}")
    assert upload(client, b"three").status_code == 200


def test_uploads_past_the_stored_bytes_are_refused(tiny_server: Callable[..., TestClient], tmp_path: Path) -> None:
    client = tiny_server(max_stored_bytes=1_000)
    assert upload(client, b"x" * 600).status_code == 200
    refused = upload(client, b"y" * 600)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "storage_limit_exceeded"
    assert "limit of 1,000 bytes for all files (600 stored)" in refused.json()["error"]["message"]
    assert len(stored(tmp_path)) == 2  # the first file's bytes and record; nothing of the refused one
