"""The Airflow REST client: it retries only where the server did nothing, and its token stays on its origin."""

from __future__ import annotations

import json
import threading
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from genai_pipeline.airflow_api import AirflowAPI, checked_base_url


class Script:
    """Statuses to answer in turn for each path (then 200), and the requests seen."""

    def __init__(self) -> None:
        self.statuses: dict[str, list[int]] = {}
        self.seen: list[tuple[str, str]] = []
        self.redirects: dict[str, str] = {}
        self.authorizations: dict[str, str | None] = {}

    def answer(self, method: str, path: str) -> tuple[int, Any]:
        self.seen.append((method, path))
        if path in self.redirects:
            return 307, self.redirects[path]
        queued = self.statuses.get(path, [])
        status = queued.pop(0) if queued else 200
        if status != 200:
            return status, {"detail": "Database is locked."}
        return 200, {"access_token": "t"} if path == "/auth/token" else {"id": 7}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Script, str]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _respond(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            script.authorizations[self.path] = self.headers.get("Authorization")
            status, body = script.answer(self.command, self.path)
            data = json.dumps(body).encode()
            self.send_response(status)
            if status == 307:
                self.send_header("Location", body)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _respond

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr("genai_pipeline.airflow_api.time.sleep", lambda _: None)
    try:
        yield script, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_a_backfill_refused_with_503_for_a_locked_database_is_sent_again(server: tuple[Script, str]) -> None:
    script, url = server
    api = AirflowAPI(base_url=url)
    script.statuses["/api/v2/backfills"] = [503, 503]
    assert api.backfill("ingest", "2026-11-28T00:00:00+00:00", "2026-11-29T00:00:00+00:00") == {"id": 7}
    assert script.seen.count(("POST", "/api/v2/backfills")) == 3


def test_a_write_that_failed_with_500_is_not_sent_twice(server: tuple[Script, str]) -> None:
    script, url = server
    api = AirflowAPI(base_url=url)
    script.statuses["/api/v2/dags/ingest/dagRuns"] = [500]
    with pytest.raises(urllib.error.HTTPError) as raised:
        api.trigger("ingest")
    assert raised.value.code == 500
    assert script.seen.count(("POST", "/api/v2/dags/ingest/dagRuns")) == 1


def test_a_503_that_lasts_is_raised_after_four_tries(server: tuple[Script, str]) -> None:
    script, url = server
    api = AirflowAPI(base_url=url)
    script.statuses["/api/v2/backfills"] = [503] * 5
    with pytest.raises(urllib.error.HTTPError):
        api.backfill("ingest", "2026-11-28T00:00:00+00:00", "2026-11-29T00:00:00+00:00")
    assert script.seen.count(("POST", "/api/v2/backfills")) == 4


def test_a_redirect_within_the_api_is_followed_with_the_token(server: tuple[Script, str]) -> None:
    script, url = server
    script.redirects["/api/v2/dags/ingest/dagRuns/r1"] = f"{url}/api/v2/dags/ingest/dagRuns/r1/"
    assert AirflowAPI(base_url=url).run("ingest", "r1") == {"id": 7}
    assert script.authorizations["/api/v2/dags/ingest/dagRuns/r1/"] == "Bearer t"


def test_a_redirect_to_another_host_is_refused_and_the_token_stays_home(server: tuple[Script, str]) -> None:
    script, url = server
    elsewhere = url.replace("127.0.0.1", "localhost") + "/collect"  # another origin, same listener: it would record
    script.redirects["/api/v2/dags/ingest/dagRuns/r1"] = elsewhere
    with pytest.raises(urllib.error.HTTPError, match="refused a redirect to http://localhost"):
        AirflowAPI(base_url=url).run("ingest", "r1")
    assert "/collect" not in script.authorizations


@pytest.mark.parametrize(
    ("base_url", "allow_http", "refused"),
    [
        ("http://airflow.example.com:8080", False, True),
        ("http://10.0.0.81:8080", False, True),
        ("http://10.0.0.81:8080", True, False),
        ("https://airflow.example.com", False, False),
        ("http://localhost:8080/", False, False),
        ("http://[::1]:8080", False, False),
        ("ftp://airflow.example.com", True, True),
    ],
)
def test_plain_http_is_for_loopback_or_a_network_the_caller_trusts(base_url, allow_http, refused) -> None:
    if refused:
        with pytest.raises(ValueError, match="http"):
            checked_base_url(base_url, allow_http=allow_http)
    else:
        assert checked_base_url(base_url, allow_http=allow_http) == base_url.rstrip("/")


def test_from_env_refuses_plain_http_to_another_host_before_any_request(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_API_URL", "http://airflow.example.com:8080")
    monkeypatch.setenv("AIRFLOW_API_PASSWORD", "must-not-cross")
    with pytest.raises(ValueError, match="AIRFLOW_API_ALLOW_HTTP"):
        AirflowAPI.from_env()  # refused before any request: no token or password was sent
