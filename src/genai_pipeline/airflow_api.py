"""A small client of Airflow 3's REST API (``/api/v2``): trigger runs, post Asset events, follow runs and logs.

Used by ``pipeline trigger`` (another system starting the pipeline), ``pipeline demo`` and the tests. It speaks
plain HTTP with the standard library; the token comes from Airflow's own token flow (see :class:`AirflowAPI`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only within the API's own scheme, host and port.

    urllib copies every header but the body's onto the redirected request, the bearer token included, so a
    redirect elsewhere (or from https down to http) would hand the token to whoever answers there.
    """

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if _origin(newurl) != _origin(req.full_url):
            raise urllib.error.HTTPError(
                req.full_url, code, f"refused a redirect to {_origin(newurl)}: the token would go with it", headers, fp
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameOriginRedirects)


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}".lower()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def checked_base_url(base_url: str, *, allow_http: bool = False) -> str:
    """``base_url`` without its trailing slash, refused when the token or a password would cross a network in clear.

    Plain http is for loopback; another host takes https, or ``allow_http`` for a network the caller trusts
    (``AIRFLOW_API_ALLOW_HTTP=true``, e.g. a cluster-internal address).
    """
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"Airflow's API URL must be http(s)://host[:port], not {base_url!r}")
    if parts.scheme == "http" and not allow_http and not _is_loopback(parts.hostname):
        raise ValueError(
            f"refusing plain http to {parts.hostname}: the API token (and any password) would cross the network "
            "in clear text; use https, or set AIRFLOW_API_ALLOW_HTTP=true for a network you trust"
        )
    return base_url.rstrip("/")


class AirflowAPI:
    """The REST calls the CLI, the demo and the tests make, with a token from Airflow 3's token flow.

    With a user name, the token comes from ``POST /auth/token`` with that user's password (the simple auth
    manager, FAB, or any auth manager that issues JWTs there); without one, from ``GET /auth/token``, which only
    the simple auth manager's all-admins mode (the local stack) answers.
    """

    def __init__(
        self,
        port: int = 8080,
        *,
        base_url: str | None = None,
        username: str | None = None,
        password: str | None = None,
        allow_http: bool = False,
    ) -> None:
        self.base = checked_base_url(base_url or f"http://127.0.0.1:{port}", allow_http=allow_http)
        if username:
            credentials = {"username": username, "password": password or ""}
            self._token = self._request("POST", "/auth/token", credentials, auth=False)["access_token"]
        else:
            self._token = self._request("GET", "/auth/token", auth=False)["access_token"]

    @classmethod
    def from_env(cls, base_url: str | None = None) -> AirflowAPI:
        """The API at ``base_url``, ``AIRFLOW_API_URL`` or the local stack; credentials only from the environment.

        ``AIRFLOW_API_USERNAME`` and ``AIRFLOW_API_PASSWORD`` when set, else the local all-admins token;
        ``AIRFLOW_API_ALLOW_HTTP=true`` allows plain http to a host other than this one.
        """
        return cls(
            base_url=base_url or os.environ.get("AIRFLOW_API_URL") or "http://127.0.0.1:8080",
            username=os.environ.get("AIRFLOW_API_USERNAME"),
            password=os.environ.get("AIRFLOW_API_PASSWORD"),
            allow_http=os.environ.get("AIRFLOW_API_ALLOW_HTTP", "").lower() in ("1", "true", "yes"),
        )

    def _request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Content-Type": "application/json",
                **({"Authorization": f"Bearer {self._token}"} if auth else {}),
            },
        )
        # The local metadata database is SQLite. A read can meet a write lock and answer 500: GETs try again.
        # A 503 means the server did nothing (Airflow answers a locked backfill with it, after its rollback):
        # any method tries again. Other 5xx on a write may have half-happened, so they are raised.
        attempts = 4
        for attempt in range(attempts):
            try:
                with _OPENER.open(request, timeout=30) as response:
                    return json.loads(response.read() or b"null")
            except urllib.error.HTTPError as error:
                retryable = error.code == 503 or (error.code >= 500 and method == "GET")
                if not retryable or attempt == attempts - 1:
                    raise
                time.sleep(0.5 * 2**attempt)
        return None

    def dag_loaded(self, dag_id: str) -> bool:
        """Whether the dag-processor has parsed a DAG into the database."""
        try:
            self._request("GET", f"/api/v2/dags/{dag_id}")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return False
            raise
        return True

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Start a DAG run now; returns its run id."""
        run = self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def asset(self, uri: str) -> dict[str, Any]:
        """The Asset with this URI (LookupError when Airflow knows none: no parsed DAG uses it).

        Airflow stores URIs normalised (``kb-source://docs`` becomes ``kb-source://docs/``): compared without
        the trailing slash.
        """
        found = self._request("GET", f"/api/v2/assets?uri_pattern={urllib.parse.quote(uri, safe='')}&limit=100")
        for asset in found["assets"]:
            if asset["uri"].rstrip("/") == uri.rstrip("/"):
                return asset
        raise LookupError(f"Airflow has no Asset {uri!r}: is a DAG that uses it parsed?")

    def post_asset_event(self, uri: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record an update of the Asset ``uri``, as another system would: the DAGs scheduled on it run."""
        body = {"asset_id": self.asset(uri)["id"], "extra": extra or {}}
        return self._request("POST", "/api/v2/assets/events", body)

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """One DAG run."""
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")

    def upstream_events(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The Asset events that triggered a run (each names its source DAG and run)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/upstreamAssetEvents"
        return self._request("GET", path)["asset_events"]

    def run_caused_by(self, dag_id: str, source_dag: str, source_run: str) -> str | None:
        """The run of ``dag_id`` whose Asset events came from ``source_run``, whatever else is queued or running."""
        for run in self.runs(dag_id):
            if run["run_type"] != "asset_triggered":
                continue
            events = self.upstream_events(dag_id, run["dag_run_id"])
            if any(e.get("source_dag_id") == source_dag and e.get("source_run_id") == source_run for e in events):
                return run["dag_run_id"]
        return None

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Runs of a DAG, newest first."""
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=-run_after&limit=20")["dag_runs"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        """The text of one try's task log."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}?map_index={map_index}"
        content = self._request("GET", path).get("content") or []
        return "\n".join(_log_line(item) for item in (content if isinstance(content, list) else [content]))

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's XCom value, deserialized (the API may hand back JSON as a string)."""
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
            f"/taskInstances/{task_id}/xcomEntries/{key}"
        )
        value = self._request("GET", path)["value"]
        return json.loads(value) if isinstance(value, str) else value

    def clear_tasks(self, dag_id: str, run_id: str, tasks: list[str | tuple[str, int]]) -> list[dict[str, Any]]:
        """Clear tasks of a run (``(task_id, map_index)`` for one mapped instance) and what runs after them.

        Airflow also clears the setups and teardowns around them, so a re-run gets its setup and cleanup again.
        """
        body = {
            "dry_run": False,
            "only_failed": False,
            "dag_run_id": run_id,
            "task_ids": [list(t) if isinstance(t, tuple) else t for t in tasks],
            "include_downstream": True,
        }
        return self._request("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances", body)["task_instances"]

    def clear_run(self, dag_id: str, run_id: str) -> None:
        """Re-run a whole run: every task cleared, the run queued again."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/clear"
        self._request("POST", path, {"dry_run": False})

    def backfill(self, dag_id: str, start: str, end: str, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        """Runs for every schedule tick between two ISO dates (Airflow 3 backfills run in the scheduler)."""
        body = {"dag_id": dag_id, "from_date": start, "to_date": end, "dag_run_conf": conf or {}, "max_active_runs": 1}
        return self._request("POST", "/api/v2/backfills", body)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Task instances of one run (mapped instances included)."""
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")[
            "task_instances"
        ]


def _log_line(item: Any) -> str:
    """One structured log record as text; a failure's exception (type and message) is appended to its line."""
    if not isinstance(item, dict):
        return str(item)
    errors = item.get("error_detail") or []
    causes = [f"{e.get('exc_type', '')}: {e.get('exc_value', '')}" for e in errors if isinstance(e, dict)]
    return " | ".join([str(item.get("event", "")), *causes])
