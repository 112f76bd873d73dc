"""The alert notifier against a real HTTP receiver and a real SMTP server (aiosmtpd) on free local ports."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
from airflow.sdk import DAG

from conftest import Receiver, free_port, smtp_receiver, trusted_tls, webhook_receiver
from genai_pipeline.config import Settings
from genai_pipeline.orchestration import notify
from genai_pipeline.orchestration.notify import PipelineNotifier, notify_budget_stop, send_email, send_webhook

TOKEN = "whk-token-must-not-leak"
PASSWORD = "smtp-password-must-not-leak"
ESTIMATE = {
    "billing_tokens": 1_234_567,
    "n_epochs": 3,
    "price_per_million_tokens": 3.0,
    "estimated_usd": 11.111,
    "budget_usd": 5.0,
}


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    """Start receivers on free ports for a test; each is shut down after it."""
    with ExitStack() as stack:
        yield lambda path="/hooks/pipeline", **answers: stack.enter_context(webhook_receiver(path, **answers))


def settings_for(monkeypatch: pytest.MonkeyPatch, url: str | None, token: str | None = TOKEN, **notify_env: str):
    """Settings read from the environment, as a worker reads them."""
    for name, value in {"WEBHOOK_URL": url, "WEBHOOK_TOKEN": token, **notify_env}.items():
        if value is None:
            monkeypatch.delenv(f"PIPELINE_NOTIFY__{name}", raising=False)
        else:
            monkeypatch.setenv(f"PIPELINE_NOTIFY__{name}", value)
    return Settings()


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
    settings = settings_for(monkeypatch, rx.url)

    assert notify_budget_stop(settings, dag_id="finetune", run_id="manual__1", estimate=ESTIMATE, task_id="gate")

    [got] = rx.requests
    assert got.headers["authorization"] == f"Bearer {TOKEN}"
    assert got.headers["content-type"] == "application/json"
    assert got.body["kind"] == "budget_exceeded"
    assert (got.body["dag_id"], got.body["run_id"], got.body["task_id"]) == ("finetune", "manual__1", "gate")
    assert {key: got.body[key] for key in ESTIMATE} == ESTIMATE
    assert got.body["text"] == (
        "finetune (run manual__1): fine-tuning stopped before upload: "
        "estimated $11.11 > budget $5.00 (1,234,567 tokens x 3 epochs)"
    )
    assert got.body["reason"] in got.body["text"]


def test_no_token_sends_no_authorization_header(receiver, monkeypatch) -> None:
    rx = receiver()
    assert send_webhook(settings_for(monkeypatch, rx.url, token=None), {"kind": "test", "reason": "hello"})
    [got] = rx.requests
    assert "authorization" not in got.headers
    assert got.body == {"text": "test: hello", "kind": "test", "reason": "hello"}


def test_notifier_delivers_task_failure_from_airflow_context(receiver, monkeypatch) -> None:
    rx = receiver()
    settings = settings_for(monkeypatch, rx.url)
    monkeypatch.setattr(notify, "get_settings", lambda: settings)
    context = failure_context()

    PipelineNotifier()(context)  # how Airflow calls an on_failure_callback

    [got] = rx.requests
    assert got.headers["authorization"] == f"Bearer {TOKEN}"
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
    settings = settings_for(monkeypatch, rx.url)
    monkeypatch.setattr(notify, "get_settings", lambda: settings)

    PipelineNotifier(kind="task_retry", message="{{ ti.task_id }} of {{ ti.dag_id }} is retrying")(failure_context())

    [got] = rx.requests
    assert got.body["kind"] == "task_retry"
    assert got.body["text"] == "embed of ingest is retrying"


def test_dag_level_context_without_ti_still_reports(receiver, monkeypatch) -> None:
    rx = receiver()
    settings = settings_for(monkeypatch, rx.url)
    monkeypatch.setattr(notify, "get_settings", lambda: settings)

    with DAG(dag_id="ingest", schedule=None) as dag:
        pass

    PipelineNotifier(kind="dag_failed")({"dag": dag, "run_id": "r1", "reason": "boom"})  # a DAG-level callback

    [got] = rx.requests
    assert (got.body["dag_id"], got.body["run_id"], got.body["task_id"]) == ("ingest", "r1", None)
    assert got.body["text"] == "dag failed: ingest (run r1): boom"


def test_two_server_errors_then_success_delivers_on_the_third_try(receiver, monkeypatch) -> None:
    rx = receiver(statuses=[500, 500])
    settings = settings_for(monkeypatch, rx.url)

    assert send_webhook(settings, {"kind": "test"}, attempts=4, backoff_seconds=0.01)

    assert len(rx.requests) == 3
    assert rx.requests[0].body == rx.requests[2].body


def test_rate_limit_is_retried(receiver, monkeypatch) -> None:
    rx = receiver(statuses=[429])
    assert send_webhook(settings_for(monkeypatch, rx.url), {"kind": "test"}, backoff_seconds=0.01)
    assert len(rx.requests) == 2


def test_a_receiver_that_always_fails_gives_false_without_raising(receiver, monkeypatch) -> None:
    rx = receiver(default_status=503)
    settings = settings_for(monkeypatch, rx.url)

    assert send_webhook(settings, {"kind": "test"}, attempts=3, backoff_seconds=0.01) is False
    assert len(rx.requests) == 3


def test_a_client_error_is_not_retried(receiver, monkeypatch) -> None:
    rx = receiver(default_status=400)
    assert send_webhook(settings_for(monkeypatch, rx.url), {"kind": "test"}, backoff_seconds=0.01) is False
    assert len(rx.requests) == 1


def test_unreachable_and_slow_receivers_give_false(receiver, monkeypatch) -> None:
    closed = f"http://127.0.0.1:{free_port()}/hook"
    assert send_webhook(settings_for(monkeypatch, closed), {"kind": "test"}, attempts=2, backoff_seconds=0.01) is False

    slow = receiver(delay=1.0)
    settings = settings_for(monkeypatch, slow.url, TIMEOUT_SECONDS="0.2")
    started = time.monotonic()
    assert send_webhook(settings, {"kind": "test"}, attempts=2, backoff_seconds=0.01) is False
    assert time.monotonic() - started < 1.0
    assert len(slow.requests) == 2


def test_notifier_never_raises_into_the_task(receiver, monkeypatch) -> None:
    rx = receiver(default_status=500)
    settings = settings_for(monkeypatch, rx.url)
    monkeypatch.setattr(notify, "get_settings", lambda: settings)
    monkeypatch.setattr(notify, "DEFAULT_BACKOFF_SECONDS", 0.01)

    PipelineNotifier()(failure_context())

    assert len(rx.requests) == notify.DEFAULT_ATTEMPTS


def test_no_url_configured_gives_false_without_a_request(monkeypatch, caplog) -> None:
    settings = settings_for(monkeypatch, None)

    def no_request(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("no request may be made without a URL")

    monkeypatch.setattr(notify._opener, "open", no_request)
    with caplog.at_level(logging.WARNING, logger=notify.__name__):
        assert notify_budget_stop(settings, dag_id="finetune", run_id="r1", estimate=ESTIMATE) is False
    assert "PIPELINE_NOTIFY__WEBHOOK_URL" in caplog.text


def test_the_token_and_the_url_path_never_reach_the_logs(receiver, monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(notify, "DEFAULT_BACKOFF_SECONDS", 0.01)
    failing = receiver(path="/services/T000/B000/path-secret", default_status=500)
    settings = settings_for(monkeypatch, failing.url)
    monkeypatch.setattr(notify, "get_settings", lambda: settings)

    PipelineNotifier()(failure_context())
    assert notify_budget_stop(settings, dag_id="f", run_id="r", estimate=ESTIMATE, attempts=2) is False
    unreachable = settings_for(monkeypatch, f"http://127.0.0.1:{free_port()}/services/path-secret")
    assert send_webhook(unreachable, {"kind": "test"}, attempts=1) is False

    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 3
    assert all("127.0.0.1:" in message for message in warnings)
    assert f"127.0.0.1:{urlsplit(failing.url).port}" in warnings[0]
    assert any("retrying" in record.getMessage() for record in caplog.records)  # retries were logged too
    assert TOKEN not in caplog.text
    assert "path-secret" not in caplog.text


def test_a_failed_task_is_mailed_with_dag_task_run_and_reason_and_no_secret(monkeypatch, tmp_path) -> None:
    with trusted_tls(monkeypatch, tmp_path) as tls, smtp_receiver(tls_context=tls, require_starttls=True) as mailbox:
        settings = settings_for(
            monkeypatch,
            None,
            SMTP_HOST=mailbox.host,
            SMTP_PORT=str(mailbox.port),
            SMTP_SECURITY="starttls",
            SMTP_USER="alerts",
            SMTP_PASSWORD=PASSWORD,
            EMAIL_TO='["ops@example.com", "ml@example.com"]',
        )
        monkeypatch.setattr(notify, "get_settings", lambda: settings)
        PipelineNotifier()(failure_context())

    [mail] = mailbox.messages
    assert mailbox.logins == [("alerts", PASSWORD)]  # the password goes to the server's AUTH, nowhere else
    assert mail["To"] == "ops@example.com, ml@example.com" and mail["From"] == "genai-pipeline@localhost"
    subject, body = mail["Subject"], mail.get_content()
    assert subject.startswith("[genai-pipeline] task failed: ingest.embed[pipeline-docs#3]")
    run_id = "manual__2025-01-02T03:04:05+00:00"
    for expected in ("dag_id: ingest", "task_id: embed", f"run_id: {run_id}", "embedding endpoint refused the batch"):
        assert expected in body
    assert PASSWORD not in mail.as_string() and TOKEN not in mail.as_string()


def test_webhook_and_email_both_get_the_budget_stop(receiver, monkeypatch) -> None:
    rx = receiver()
    with smtp_receiver() as mailbox:
        settings = settings_for(
            monkeypatch, rx.url, SMTP_HOST=mailbox.host, SMTP_PORT=str(mailbox.port), EMAIL_TO='["ops@example.com"]'
        )
        assert notify_budget_stop(settings, dag_id="evaluate_examples", run_id="r1", estimate=ESTIMATE)
    [got], [mail] = rx.requests, mailbox.messages
    assert got.body["kind"] == "budget_exceeded" and "estimated $11.11 > budget $5.00" in mail["Subject"]
    assert "budget_usd: 5.0" in mail.get_content()


def test_an_unreachable_mail_server_is_retried_then_dropped_with_its_host_only(monkeypatch, caplog) -> None:
    port = free_port()
    settings = settings_for(
        monkeypatch, None, SMTP_HOST="127.0.0.1", SMTP_PORT=str(port), SMTP_PASSWORD=PASSWORD, EMAIL_TO='["o@x.io"]'
    )
    with caplog.at_level(logging.INFO, logger=notify.__name__):
        assert send_email(settings, {"kind": "test"}, attempts=2, backoff_seconds=0.01) is False
    assert f"SMTP 127.0.0.1:{port}" in caplog.text and "retrying" in caplog.text and "dropped" in caplog.text
    assert PASSWORD not in caplog.text


def test_a_429s_retry_after_is_waited_out_when_longer_than_the_backoff(receiver, monkeypatch) -> None:
    monkeypatch.setattr(notify, "DEFAULT_BACKOFF_SECONDS", 0.01)
    busy = receiver(statuses=[429], retry_after="1.5")
    began = time.monotonic()
    assert send_webhook(settings_for(monkeypatch, busy.url), {"kind": "budget_exceeded"})
    assert time.monotonic() - began >= 1.5 and len(busy.requests) == 2


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_a_mail_server_whose_certificate_is_not_trusted_never_sees_the_password(
    monkeypatch, tmp_path, caplog, security
) -> None:
    with trusted_tls(monkeypatch, tmp_path, trusted=False) as tls:
        options = {"tls_context": tls, "require_starttls": True} if security == "starttls" else {"ssl_context": tls}
        with smtp_receiver(**options) as mailbox:
            settings = settings_for(
                monkeypatch,
                None,
                SMTP_HOST=mailbox.host,
                SMTP_PORT=str(mailbox.port),
                SMTP_SECURITY=security,
                SMTP_USER="alerts",
                SMTP_PASSWORD=PASSWORD,
                EMAIL_TO='["ops@example.com"]',
            )
            with caplog.at_level(logging.INFO, logger=notify.__name__):
                assert send_email(settings, {"kind": "test"}, attempts=3, backoff_seconds=0.01) is False
    assert mailbox.logins == [] and mailbox.messages == []
    assert "certificate not trusted" in caplog.text and "retrying" not in caplog.text  # final, not retried


def test_a_login_in_clear_text_is_refused_unless_allowed(monkeypatch, caplog) -> None:
    with smtp_receiver() as mailbox:
        env = {
            "SMTP_HOST": mailbox.host,
            "SMTP_PORT": str(mailbox.port),
            "SMTP_USER": "alerts",
            "SMTP_PASSWORD": PASSWORD,
            "EMAIL_TO": '["ops@example.com"]',
        }
        with caplog.at_level(logging.ERROR, logger=notify.__name__):
            assert send_email(settings_for(monkeypatch, None, **env), {"kind": "test"}) is False
        assert mailbox.logins == [] and "in clear text" in caplog.text
        allowed = settings_for(monkeypatch, None, SMTP_ALLOW_CLEARTEXT_LOGIN="true", **env)
        assert send_email(allowed, {"kind": "test"}) is True
    assert mailbox.logins == [("alerts", PASSWORD)] and len(mailbox.messages) == 1
