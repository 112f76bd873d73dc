from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from s3fs import S3FileSystem

from genai_pipeline.store import Store


def test_two_writers_of_one_key_never_collide(tmp_path: Path) -> None:
    """A zombie task and its retry may write the same key at once: each needs a temp file of its own."""
    store = Store(str(tmp_path))
    errors: list[BaseException] = []

    def write(value: int) -> None:
        try:
            for _ in range(200):
                store.write_json("ingest/run/results/00000.json", {"writer": value})
        except BaseException as error:  # collected, and asserted below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.read_json("ingest/run/results/00000.json")["writer"] in (0, 1)
    assert store.keys("ingest/run/results") == ["00000.json"]  # no temp file is listed or left


def test_an_s3_store_reaches_the_endpoint_and_signs_with_the_keys_of_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No setting names the endpoint or the keys: botocore reads them from the env (a Secret, envFrom)."""
    requests: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            requests.append((self.path, self.headers.get("Authorization", "")))
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET = answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMSECRET")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-in-any-setting")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    S3FileSystem.clear_instance_cache()  # a client made for another endpoint would be reused
    try:
        assert not Store("s3://pipeline/store").exists("reports/latest.json")
    finally:
        server.shutdown()
        S3FileSystem.clear_instance_cache()
    assert requests and all(path.startswith("/pipeline") for path, _ in requests)
    assert all("Credential=AKIDFROMSECRET/" in auth for _, auth in requests)
