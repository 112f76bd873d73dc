"""The Airflow side of alerts: the notifier, the budget stop and the events they build, delivered for real."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import DAG

from conftest import NOTIFY_PASSWORD, NOTIFY_TOKEN, free_port, notify_settings, smtp_receiver, tls_authority
from genai_pipeline.clients import alerts
from genai_pipeline.clients.alerts import send_webhook
from genai_pipeline.orchestration import notify
from genai_pipeline.orchestration.notify import PipelineNotifier, notify_budget_stop

ESTIMATE = {
    "billing_tokens": 1_234_567,
    "n_epochs": 3,
    "price_per_million_tokens": 3.0,
    "estimated_usd": 11.111,
    "budget_usd": 5.0,
}


def failure_context() -> dict[str, Any]:
    """The parts of an Airflow 3 task-failure context the notifier reads."""
    run_id = "manual__2025-01-02T03:04:05+00:00"
    ti = SimpleNamespace(
        dag_id="ingest",
        task_id="embed",
        run_id=run_id,
        map_index=2,
        rendered_map_index="pipeline-docs#3",
        try_number=2,
        log_url=f"http://airflow:8080/dags/ingest/runs/{run_id}/tasks/embed/mapped/2?try_number=2",
    )
    return {
        "ti": ti,
        "dag_run": SimpleNamespace(dag_id="ingest", run_id=run_id),
        "run_id": run_id,
        "exception": RuntimeError("embedding endpoint refused the batch\n(status 503)"),
    }


def test_budget_stop_is_delivered_with_bearer_token_fields_and_text(receiver, monkeypatch) -> None:
    rx = receiver()
    settings = notify_settings(monkeypatch, rx.url)

    assert notify_budget_stop(settings, dag_id="finetune", run_id="manual__1", estimate=ESTIMATE, task_id="gate")

    [got] = rx.requests
    assert got.headers["authorization"] == f"Bearer {NOTIFY_TOKEN}"
    assert got.headers["content-type"] == "application/json"
    assert got.body["kind"] == "budget_exceeded"
    assert (got.body["dag_id"], got.body["run_id"], got.body["task_id"]) == ("finetune", "manual__1", "gate")
    assert {key: got.body[key] for key in ESTIMATE} == ESTIMATE
    assert got.body["text"] == (
        "finetune (run manual__1): fine-tuning stopped before upload: "
        "estimated $11.11 > budget $5.00 (1,234,567 tokens x 3 epochs)"
    )
    assert got.body["reason"] in got.body["text"]


def test_notifier_delivers_task_failure_from_airflow_context(receiver, monkeypatch) -> None:
    rx = receiver()
    settings = notify_settings(monkeypatch, rx.url)
    monkeypatch.setattr(notify, "get_settings", lambda: settings)
    context = failure_context()

    PipelineNotifier()(context)  # how Airflow calls an on_failure_callback

    [got] = rx.requests
    assert got.headers["authorization"] == f"Bearer {NOTIFY_TOKEN}"
    body = got.body
    assert body["kind"] == "task_failed"
    assert (body["dag_id"], body["task_id"], body["run_id"]) == ("ingest", "embed", context["run_id"])
    assert (body["map_index"], body["try_number"]) == (2, 2)
    assert body["reason"] == "RuntimeError: embedding endpoint refused the batch\n(status 503)"
    assert body["log_url"] == context["ti"].log_url
    assert body["text"] == (
        f"task failed: ingest.embed[pipeline-docs#3] (run {context['run_id']}, try 2): "
        "RuntimeError: embedding endpoint refused the batch (status 503)"
    )
    assert "\n" not in body["text"]


def test_notifier_message_is_templated_from_the_context(receiver, monkeypatch) -> None:
    rx = receiver()
    settings = notify_settings(monkeypatch, rx.url)
    monkeypatch.setattr(notify, "get_settings", lambda: settings)

    PipelineNotifier(kind="task_retry", message="{{ ti.task_id }} of {{ ti.dag_id }} is retrying")(failure_context())

    [got] = rx.requests
    assert got.body["kind"] == "task_retry"
    assert got.body["text"] == "embed of ingest is retrying"


def test_dag_level_context_without_ti_still_reports(receiver, monkeypatch) -> None:
    rx = receiver()
    settings = notify_settings(monkeypatch, rx.url)
    monkeypatch.setattr(notify, "get_settings", lambda: settings)

    with DAG(dag_id="ingest", schedule=None) as dag:
        pass

    PipelineNotifier(kind="dag_failed")({"dag": dag, "run_id": "r1", "reason": "boom"})  # a DAG-level callback

    [got] = rx.requests
    assert (got.body["dag_id"], got.body["run_id"], got.body["task_id"]) == ("ingest", "r1", None)
    assert got.body["text"] == "dag failed: ingest (run r1): boom"


def test_notifier_never_raises_into_the_task(receiver, monkeypatch) -> None:
    rx = receiver(default_status=500)
    settings = notify_settings(monkeypatch, rx.url)
    monkeypatch.setattr(notify, "get_settings", lambda: settings)
    monkeypatch.setattr(alerts, "DEFAULT_BACKOFF_SECONDS", 0.01)

    PipelineNotifier()(failure_context())

    assert len(rx.requests) == alerts.DEFAULT_ATTEMPTS


def test_a_failed_task_is_mailed_with_dag_task_run_and_reason_and_no_secret(monkeypatch, tmp_path) -> None:
    tls, authority = tls_authority(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(authority))
    with smtp_receiver(tls_context=tls, require_starttls=True) as mailbox:
        settings = notify_settings(
            monkeypatch,
            None,
            SMTP_HOST=mailbox.host,
            SMTP_PORT=str(mailbox.port),
            SMTP_SECURITY="starttls",
            SMTP_USER="alerts",
            SMTP_PASSWORD=NOTIFY_PASSWORD,
            EMAIL_TO='["ops@example.com", "ml@example.com"]',
        )
        monkeypatch.setattr(notify, "get_settings", lambda: settings)
        PipelineNotifier()(failure_context())

    [mail] = mailbox.messages
    assert mailbox.logins == [("alerts", NOTIFY_PASSWORD)]  # the password goes to the server's AUTH, nowhere else
    assert mail["To"] == "ops@example.com, ml@example.com" and mail["From"] == "genai-pipeline@localhost"
    subject, body = mail["Subject"], mail.get_content()
    assert subject.startswith("[genai-pipeline] task failed: ingest.embed[pipeline-docs#3]")
    run_id = "manual__2025-01-02T03:04:05+00:00"
    for expected in ("dag_id: ingest", "task_id: embed", f"run_id: {run_id}", "embedding endpoint refused the batch"):
        assert expected in body
    assert NOTIFY_PASSWORD not in mail.as_string() and NOTIFY_TOKEN not in mail.as_string()


def test_webhook_and_email_both_get_the_budget_stop(receiver, monkeypatch) -> None:
    rx = receiver()
    with smtp_receiver() as mailbox:
        settings = notify_settings(
            monkeypatch, rx.url, SMTP_HOST=mailbox.host, SMTP_PORT=str(mailbox.port), EMAIL_TO='["ops@example.com"]'
        )
        assert notify_budget_stop(settings, dag_id="evaluate_examples", run_id="r1", estimate=ESTIMATE)
    [got], [mail] = rx.requests, mailbox.messages
    assert got.body["kind"] == "budget_exceeded" and "estimated $11.11 > budget $5.00" in mail["Subject"]
    assert "budget_usd: 5.0" in mail.get_content()


def test_no_url_configured_gives_false_without_a_request(monkeypatch, caplog) -> None:
    settings = notify_settings(monkeypatch, None)

    def no_request(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("no request may be made without a URL")

    monkeypatch.setattr(alerts._opener, "open", no_request)
    with caplog.at_level(logging.WARNING, logger=alerts.__name__):
        assert notify_budget_stop(settings, dag_id="finetune", run_id="r1", estimate=ESTIMATE) is False
    assert "PIPELINE_NOTIFY__WEBHOOK_URL" in caplog.text


def test_the_token_and_the_url_path_never_reach_the_logs(receiver, monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(alerts, "DEFAULT_BACKOFF_SECONDS", 0.01)
    failing = receiver(path="/services/T000/B000/path-secret", default_status=500)
    settings = notify_settings(monkeypatch, failing.url)
    monkeypatch.setattr(notify, "get_settings", lambda: settings)

    PipelineNotifier()(failure_context())
    assert notify_budget_stop(settings, dag_id="f", run_id="r", estimate=ESTIMATE, attempts=2) is False
    unreachable = notify_settings(monkeypatch, f"http://127.0.0.1:{free_port()}/services/path-secret")
    assert send_webhook(unreachable, {"kind": "test"}, attempts=1) is False

    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 3
    assert all("127.0.0.1:" in message for message in warnings)
    assert f"127.0.0.1:{urlsplit(failing.url).port}" in warnings[0]
    assert any("retrying" in record.getMessage() for record in caplog.records)  # retries were logged too
    assert NOTIFY_TOKEN not in caplog.text
    assert "path-secret" not in caplog.text
