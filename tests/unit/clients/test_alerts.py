"""Alert delivery against a real HTTP receiver and a real SMTP server (aiosmtpd) on free local ports."""

from __future__ import annotations

import logging
import time

import pytest

from conftest import NOTIFY_PASSWORD, free_port, notify_settings, smtp_receiver, tls_authority
from genai_pipeline.clients import alerts
from genai_pipeline.clients.alerts import send_email, send_webhook


def test_no_token_sends_no_authorization_header(receiver, monkeypatch) -> None:
    rx = receiver()
    assert send_webhook(notify_settings(monkeypatch, rx.url, token=None), {"kind": "test", "reason": "hello"})
    [got] = rx.requests
    assert "authorization" not in got.headers
    assert got.body == {"text": "test: hello", "kind": "test", "reason": "hello"}


def test_two_server_errors_then_success_delivers_on_the_third_try(receiver, monkeypatch) -> None:
    rx = receiver(statuses=[500, 500])
    settings = notify_settings(monkeypatch, rx.url)

    assert send_webhook(settings, {"kind": "test"}, attempts=4, backoff_seconds=0.01)

    assert len(rx.requests) == 3
    assert rx.requests[0].body == rx.requests[2].body


def test_rate_limit_is_retried(receiver, monkeypatch) -> None:
    rx = receiver(statuses=[429])
    assert send_webhook(notify_settings(monkeypatch, rx.url), {"kind": "test"}, backoff_seconds=0.01)
    assert len(rx.requests) == 2


def test_a_receiver_that_always_fails_gives_false_without_raising(receiver, monkeypatch) -> None:
    rx = receiver(default_status=503)
    settings = notify_settings(monkeypatch, rx.url)

    assert send_webhook(settings, {"kind": "test"}, attempts=3, backoff_seconds=0.01) is False
    assert len(rx.requests) == 3


def test_a_client_error_is_not_retried(receiver, monkeypatch) -> None:
    rx = receiver(default_status=400)
    assert send_webhook(notify_settings(monkeypatch, rx.url), {"kind": "test"}, backoff_seconds=0.01) is False
    assert len(rx.requests) == 1


def test_unreachable_and_slow_receivers_give_false(receiver, monkeypatch) -> None:
    closed = f"http://127.0.0.1:{free_port()}/hook"
    assert (
        send_webhook(notify_settings(monkeypatch, closed), {"kind": "test"}, attempts=2, backoff_seconds=0.01) is False
    )

    slow = receiver(delay=1.0)
    settings = notify_settings(monkeypatch, slow.url, TIMEOUT_SECONDS="0.2")
    started = time.monotonic()
    assert send_webhook(settings, {"kind": "test"}, attempts=2, backoff_seconds=0.01) is False
    assert time.monotonic() - started < 1.0
    assert len(slow.requests) == 2


def test_an_unreachable_mail_server_is_retried_then_dropped_with_its_host_only(monkeypatch, caplog) -> None:
    port = free_port()
    settings = notify_settings(
        monkeypatch,
        None,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(port),
        SMTP_PASSWORD=NOTIFY_PASSWORD,
        EMAIL_TO='["o@x.io"]',
    )
    with caplog.at_level(logging.INFO, logger=alerts.__name__):
        assert send_email(settings, {"kind": "test"}, attempts=2, backoff_seconds=0.01) is False
    assert f"SMTP 127.0.0.1:{port}" in caplog.text and "retrying" in caplog.text and "dropped" in caplog.text
    assert NOTIFY_PASSWORD not in caplog.text


def test_a_429s_retry_after_is_waited_out_when_longer_than_the_backoff(receiver, monkeypatch) -> None:
    monkeypatch.setattr(alerts, "DEFAULT_BACKOFF_SECONDS", 0.01)
    busy = receiver(statuses=[429], retry_after="1.5")
    began = time.monotonic()
    assert send_webhook(notify_settings(monkeypatch, busy.url), {"kind": "budget_exceeded"})
    assert time.monotonic() - began >= 1.5 and len(busy.requests) == 2


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_a_mail_server_whose_certificate_is_not_trusted_never_sees_the_password(
    monkeypatch, tmp_path, caplog, security
) -> None:
    tls, _ = tls_authority(tmp_path)  # a CA this client does not trust (no SSL_CERT_FILE)
    options = {"tls_context": tls, "require_starttls": True} if security == "starttls" else {"ssl_context": tls}
    with smtp_receiver(**options) as mailbox:
        settings = notify_settings(
            monkeypatch,
            None,
            SMTP_HOST=mailbox.host,
            SMTP_PORT=str(mailbox.port),
            SMTP_SECURITY=security,
            SMTP_USER="alerts",
            SMTP_PASSWORD=NOTIFY_PASSWORD,
            EMAIL_TO='["ops@example.com"]',
        )
        with caplog.at_level(logging.INFO, logger=alerts.__name__):
            assert send_email(settings, {"kind": "test"}, attempts=3, backoff_seconds=0.01) is False
    assert mailbox.logins == [] and mailbox.messages == []
    assert "certificate not trusted" in caplog.text and "retrying" not in caplog.text  # final, not retried


def test_a_login_in_clear_text_is_refused_unless_allowed(monkeypatch, caplog) -> None:
    with smtp_receiver() as mailbox:
        env = {
            "SMTP_HOST": mailbox.host,
            "SMTP_PORT": str(mailbox.port),
            "SMTP_USER": "alerts",
            "SMTP_PASSWORD": NOTIFY_PASSWORD,
            "EMAIL_TO": '["ops@example.com"]',
        }
        with caplog.at_level(logging.ERROR, logger=alerts.__name__):
            assert send_email(notify_settings(monkeypatch, None, **env), {"kind": "test"}) is False
        assert mailbox.logins == [] and "in clear text" in caplog.text
        allowed = notify_settings(monkeypatch, None, SMTP_ALLOW_CLEARTEXT_LOGIN="true", **env)
        assert send_email(allowed, {"kind": "test"}) is True
    assert mailbox.logins == [("alerts", NOTIFY_PASSWORD)] and len(mailbox.messages) == 1
