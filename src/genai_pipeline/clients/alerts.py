"""Alert delivery: a JSON POST to the webhook and an email through SMTP, each retried briefly, never raising.

A notification is best effort by design: it is retried briefly, then dropped with a warning, and it never fails
the task it reports on. The standard library's ``urllib`` sends the webhook rather than httpx, because httpx
logs every request's full URL at INFO, and a webhook URL often carries its secret in the path (Slack's do); this
module logs only hosts. Neither the webhook token nor the SMTP password is ever part of a message or a log line.
What an event says (a failed task, a late run, a budget stop) is built in :mod:`genai_pipeline.orchestration.notify`.
"""

from __future__ import annotations

import http.client
import json
import logging
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from genai_pipeline.config import Settings

log = logging.getLogger(__name__)

# A callback holds up its worker slot: a few quick tries, not a long campaign.
DEFAULT_ATTEMPTS = 4
DEFAULT_BACKOFF_SECONDS = 0.5
# A receiver's Retry-After is honoured up to this many seconds.
MAX_RETRY_AFTER_SECONDS = 30.0
# An event's text line keeps this much of its reason.
MAX_TEXT_REASON_CHARS = 300

_RETRYABLE_STATUS = frozenset({429}) | frozenset(range(500, 600))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would forward the bearer token to wherever one points and drop the POST body."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def send_webhook(
    settings: Settings,
    event: Mapping[str, Any],
    *,
    attempts: int | None = None,
    backoff_seconds: float | None = None,
) -> bool:
    """POST one event to the configured webhook; True once a receiver accepted it (2xx).

    Connection errors, timeouts, 5xx and 429 are retried with exponential backoff (``backoff_seconds``,
    doubling; a 429's Retry-After when longer); any other answer is final. ``attempts`` and
    ``backoff_seconds`` default to the module's ``DEFAULT_*`` values. Never raises: a missing URL or a final
    failure is a warning that names the URL's host only (the path and the token may be secrets) and returns False.
    """
    url = settings.notify.webhook_url.get_secret_value() if settings.notify.webhook_url else ""
    kind = event.get("kind", "event")
    if not url:
        log.warning("no webhook configured (PIPELINE_NOTIFY__WEBHOOK_URL); %s notification not sent", kind)
        return False
    host = _host(url)
    if urlsplit(url).scheme not in ("http", "https"):
        log.warning("webhook URL for host %s is not http(s); %s notification not sent", host, kind)
        return False
    try:
        request = _request(settings, url, event)
    except Exception as exc:  # an unusable URL or event must not fail the task either
        log.warning("webhook notification to %s not built (%s); %s not sent", host, type(exc).__name__, kind)
        return False

    def post() -> None:
        with _opener.open(request, timeout=settings.notify.timeout_seconds) as response:
            response.read(65536)

    return _with_retries(post, f"webhook {host}", kind, attempts=attempts, backoff_seconds=backoff_seconds)


def _with_retries(
    attempt: Callable[[], None], where: str, kind: str, *, attempts: int | None, backoff_seconds: float | None
) -> bool:
    """Run one delivery ``attempt`` until it succeeds, with exponential backoff; never raises.

    The transport's errors are classified here: connection errors, timeouts, HTTP 5xx/429 and SMTP 4xx are
    retried, anything else (an untrusted certificate too) is final. Only a status or an error type is logged,
    never a URL path, a token or a password.
    """
    attempts = max(DEFAULT_ATTEMPTS if attempts is None else attempts, 1)
    backoff_seconds = DEFAULT_BACKOFF_SECONDS if backoff_seconds is None else backoff_seconds
    problem = "no attempt made"
    for number in range(1, attempts + 1):
        delay = backoff_seconds * 2 ** (number - 1)
        try:
            attempt()
            return True
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            exc.close()
            if exc.code not in _RETRYABLE_STATUS:
                break
            delay = max(delay, _retry_after_seconds(retry_after))
        except ssl.SSLCertVerificationError as exc:  # the same certificate fails the same way next time
            problem = f"certificate not trusted: {exc.verify_message}"
            break
        except smtplib.SMTPResponseException as exc:  # 4xx is "try again later" in SMTP, 5xx is final
            problem = f"SMTP {exc.smtp_code}"
            if not 400 <= exc.smtp_code < 500:
                break
        except (OSError, http.client.HTTPException, smtplib.SMTPException) as exc:  # refused, reset, timed out
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            problem = type(reason).__name__ if isinstance(reason, BaseException) else str(reason)
        except Exception as exc:  # nothing about a notification may escape into the task
            problem = type(exc).__name__
            break
        if number < attempts:
            log.info("%s: %s on attempt %d/%d; retrying in %.1fs", where, problem, number, attempts, delay)
            time.sleep(delay)
    log.warning("%s notification via %s not delivered (%s); dropped", kind, where, problem)
    return False


def send_email(
    settings: Settings,
    event: Mapping[str, Any],
    *,
    attempts: int | None = None,
    backoff_seconds: float | None = None,
) -> bool:
    """Mail one event to ``notify.email_to`` through the configured SMTP server; True once the server took it.

    The subject is the event's text line; the body repeats it with every field. Temporary failures (refused
    connections, timeouts, SMTP 4xx) are retried like the webhook's; never raises, and logs the server's
    host and port only.
    """
    notify = settings.notify
    kind = str(event.get("kind", "event"))
    if not notify.smtp_host or not notify.email_to:
        log.warning("no SMTP host or recipients configured; %s email not sent", kind)
        return False
    if notify.smtp_user and notify.smtp_security == "none" and not notify.smtp_allow_cleartext_login:
        log.error(
            "refusing to send the SMTP password to %s:%s in clear text: set PIPELINE_NOTIFY__SMTP_SECURITY to "
            "starttls or ssl (or PIPELINE_NOTIFY__SMTP_ALLOW_CLEARTEXT_LOGIN=true for a trusted relay); %s email "
            "not sent",
            notify.smtp_host,
            notify.smtp_port,
            kind,
        )
        return False
    message = email_message(settings, event)
    password = notify.smtp_password.get_secret_value() if notify.smtp_password else ""
    # The system's CA store (or SSL_CERT_FILE) and host-name checks: smtplib verifies nothing without a context.
    tls = ssl.create_default_context()

    def send() -> None:
        if notify.smtp_security == "ssl":
            smtp = smtplib.SMTP_SSL(notify.smtp_host, notify.smtp_port, timeout=notify.timeout_seconds, context=tls)
        else:
            smtp = smtplib.SMTP(notify.smtp_host, notify.smtp_port, timeout=notify.timeout_seconds)
        with smtp:
            if notify.smtp_security == "starttls":
                smtp.starttls(context=tls)
            if notify.smtp_user:
                smtp.login(notify.smtp_user, password)
            smtp.send_message(message)

    where = f"SMTP {notify.smtp_host}:{notify.smtp_port}"
    return _with_retries(send, where, kind, attempts=attempts, backoff_seconds=backoff_seconds)


def email_message(settings: Settings, event: Mapping[str, Any]) -> EmailMessage:
    """The event as an email: its text line as the subject, the line and each field in the body."""
    text = " ".join(str(event.get("text") or _default_text(event)).split())
    message = EmailMessage()
    message["Subject"] = clip(f"[genai-pipeline] {text}", 200)
    message["From"] = settings.notify.email_from
    message["To"] = ", ".join(settings.notify.email_to)
    fields = [f"{key}: {value}" for key, value in event.items() if key != "text" and value is not None]
    message.set_content("\n".join([text, "", *fields]) + "\n")
    return message


def deliver(settings: Settings, event: Mapping[str, Any], **retry_options: Any) -> bool:
    """Send an event to every configured channel (webhook, email); True when at least one took it."""
    notify = settings.notify
    sent = []
    if notify.webhook_url:
        sent.append(send_webhook(settings, event, **retry_options))
    if notify.smtp_host and notify.email_to:
        sent.append(send_email(settings, event, **retry_options))
    if not sent:
        log.warning(
            "no alert channel configured (PIPELINE_NOTIFY__WEBHOOK_URL, or PIPELINE_NOTIFY__SMTP_HOST with "
            "PIPELINE_NOTIFY__EMAIL_TO); %s notification not sent",
            event.get("kind", "event"),
        )
    return any(sent)


def _request(settings: Settings, url: str, event: Mapping[str, Any]) -> urllib.request.Request:
    body = {"text": event.get("text") or _default_text(event), **{k: v for k, v in event.items() if k != "text"}}
    headers = {"Content-Type": "application/json", "User-Agent": "genai-pipeline-notify"}
    if settings.notify.webhook_token is not None:
        headers["Authorization"] = f"Bearer {settings.notify.webhook_token.get_secret_value()}"
    data = json.dumps(body, default=str).encode()
    return urllib.request.Request(url, data=data, headers=headers, method="POST")


def _default_text(event: Mapping[str, Any]) -> str:
    parts = [str(event.get("kind", "event")).replace("_", " ")]
    for key in ("dag_id", "task_id", "run_id"):
        if event.get(key):
            parts.append(f"{key.removesuffix('_id')} {event[key]}")
    text = ", ".join(parts)
    if event.get("reason"):
        text += ": " + clip(" ".join(str(event["reason"]).split()), MAX_TEXT_REASON_CHARS)
    return text


def _host(url: str) -> str:
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    except ValueError:
        return "<invalid URL>"


def _retry_after_seconds(value: str | None) -> float:
    try:
        return min(max(float(value or 0), 0.0), MAX_RETRY_AFTER_SECONDS)
    except ValueError:  # an HTTP date: not worth parsing for a notification
        return 0.0


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
