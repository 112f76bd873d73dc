"""Alerts for the pipeline's DAGs: a task failed, a run is late, or the cost gate stopped a run.

One notifier for every DAG builds each event and hands it to :func:`genai_pipeline.clients.alerts.deliver`,
which sends it to every configured channel: a JSON POST to ``PIPELINE_NOTIFY__WEBHOOK_URL`` (a Slack-compatible
``text`` line for humans plus the event's fields, ``kind``, ``dag_id``, ``run_id``, ..., for machines) and an
email through ``PIPELINE_NOTIFY__SMTP_HOST`` to ``PIPELINE_NOTIFY__EMAIL_TO``. Only this Airflow side lives here.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseNotifier
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

from genai_pipeline.clients.alerts import MAX_TEXT_REASON_CHARS, clip, deliver
from genai_pipeline.config import Settings, get_settings

log = logging.getLogger(__name__)

# Exception text can be a whole pod log: the event keeps this much, the text line less.
MAX_REASON_CHARS = 2000


def notify_budget_stop(
    settings: Settings,
    *,
    dag_id: str,
    run_id: str,
    estimate: Mapping[str, Any],
    task_id: str | None = None,
    **send_options: Any,
) -> bool:
    """Report that the cost gate stopped a fine-tuning run before its files were uploaded.

    ``estimate`` is the gate's estimate (``billing_tokens``, ``n_epochs``, ``price_per_million_tokens``,
    ``estimated_usd``, ``budget_usd``); its fields go into the event as they are, so a receiver can act on
    numbers rather than parse the text. ``send_options`` (attempts, backoff) are passed on to :func:`deliver`.
    """
    tokens, epochs = estimate.get("billing_tokens"), estimate.get("n_epochs")
    reason = (
        f"estimated ${_money(estimate.get('estimated_usd'))} > budget ${_money(estimate.get('budget_usd'))} "
        f"({_count(tokens)} tokens x {epochs} epochs)"
    )
    event = {
        **dict(estimate),
        "kind": "budget_exceeded",
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "reason": reason,
        "text": f"{dag_id} (run {run_id}): fine-tuning stopped before upload: {reason}",
    }
    return deliver(settings, event, **send_options)


def run_deadline(settings: Settings | None = None) -> DeadlineAlert | None:
    """Every DAG's lateness alert: ``notify.late_after_minutes`` after a run was queued, if it is still going.

    Airflow's scheduler records the deadline when the run is queued, drops it when the run ends, and past it
    runs :func:`notify_late_run` in the triggerer.
    """
    settings = settings or get_settings()
    minutes = settings.notify.late_after_minutes
    if minutes is None:
        return None
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=datetime.timedelta(minutes=minutes),
        callback=AsyncCallback(notify_late_run, kwargs={"late_after_minutes": minutes}),
    )


async def notify_late_run(late_after_minutes: float, context: Mapping[str, Any] | None = None) -> None:
    """The deadline callback: report the run that is still going (in the triggerer, off its event loop)."""
    run = (context or {}).get("dag_run") or {}
    dag_id, run_id = run.get("dag_id"), run.get("dag_run_id") or run.get("run_id")
    reason = f"still {run.get('state') or 'running'} {late_after_minutes:g} min after it was queued"
    event = {
        "kind": "run_late",
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": None,
        "reason": reason,
        "queued_at": run.get("queued_at"),
        "text": f"run late: {dag_id} (run {run_id}): {reason}",
    }
    await asyncio.to_thread(deliver, get_settings(), event)


class PipelineNotifier(BaseNotifier):
    """An Airflow callback that reports the failed (or otherwise reported) task to every alert channel.

    Use ``on_failure_callback=PipelineNotifier()`` on a task or in a DAG's ``default_args``. Settings are read
    when it fires, not when the DAG file is parsed, so the token never lives on the DAG object. ``message``
    (Jinja-templated against the task's context) replaces the generated text line.
    """

    template_fields = ("message",)

    def __init__(self, kind: str = "task_failed", message: str | None = None) -> None:
        self.kind = kind
        self.message = message
        super().__init__()  # resolves template files from the fields, so they are set first

    def notify(self, context: Mapping[str, Any]) -> None:
        """Build the event from the context and send it; logs instead of raising, whatever goes wrong."""
        try:
            deliver(get_settings(), task_event(context, kind=self.kind, message=self.message))
        except Exception as exc:
            log.warning("%s notification not sent: %s", self.kind, type(exc).__name__)


def task_event(context: Mapping[str, Any], *, kind: str = "task_failed", message: str | None = None) -> dict[str, Any]:
    """The event of a task (or DAG-level) callback: what failed where, why, and the link to its log."""
    ti = context.get("ti")
    dag_run = context.get("dag_run")
    dag_id = (
        getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None) or getattr(context.get("dag"), "dag_id", None)
    )
    run_id = getattr(ti, "run_id", None) or context.get("run_id") or getattr(dag_run, "run_id", None)
    exception = context.get("exception")
    reason = _exception_text(exception) if exception is not None else context.get("reason")
    event: dict[str, Any] = {
        "kind": kind,
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": getattr(ti, "task_id", None),
        "map_index": getattr(ti, "map_index", None),
        "map_label": getattr(ti, "rendered_map_index", None),
        "try_number": getattr(ti, "try_number", None),
        "reason": clip(str(reason), MAX_REASON_CHARS) if reason else None,
        "log_url": _log_url(ti),
    }
    event["text"] = message or _task_text(event)
    return event


def _task_text(event: Mapping[str, Any]) -> str:
    where = f"{event['dag_id']}.{event['task_id']}" if event["task_id"] else str(event["dag_id"])
    if event.get("map_label"):
        where += f"[{event['map_label']}]"
    elif isinstance(event.get("map_index"), int) and event["map_index"] >= 0:
        where += f"[{event['map_index']}]"
    details = f"run {event['run_id']}"
    if event.get("try_number"):
        details += f", try {event['try_number']}"
    text = f"{str(event['kind']).replace('_', ' ')}: {where} ({details})"
    if event.get("reason"):
        text += ": " + clip(" ".join(str(event["reason"]).split()), MAX_TEXT_REASON_CHARS)
    return text


def _exception_text(exception: object) -> str:
    if isinstance(exception, BaseException):
        detail = str(exception)
        return f"{type(exception).__name__}: {detail}" if detail else type(exception).__name__
    return str(exception)


def _log_url(ti: object) -> str | None:
    try:  # a property that reads Airflow's config; a callback must not fail on it
        url = getattr(ti, "log_url", None)
    except Exception:
        return None
    return url if isinstance(url, str) else None


def _money(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else str(value)


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)
