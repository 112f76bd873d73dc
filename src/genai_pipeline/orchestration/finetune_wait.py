"""The deferrable wait for a fine-tuning job on any OpenAI-compatible API (hosted, or the local model server).

:class:`WaitForFineTuneJob` checks the job once on the worker; unless it has already finished, it defers to
:class:`FineTuneJobTrigger`, which polls ``GET /fine_tuning/jobs/{id}`` with the async client in the
triggerer (no worker slot held), backing off while the status stays the same, and fires one event when the
job is ``succeeded``, ``failed`` or ``cancelled`` (or ``missing``: the API answered 404). The task resumes in
``execute_complete``: the fine-tuned model on success, an error with the API's reason otherwise.

A user killing the task (mark failed/success, clear) cancels the job: :meth:`FineTuneJobTrigger.on_kill`
while deferred, :meth:`WaitForFineTuneJob.on_kill` during the worker's first check. A triggerer restart or
redeploy never does: the trigger is only moved, and ``cleanup`` leaves the job alone.

:class:`FineTuneJobLink` is the task's "Fine-tuning job" button; see its docstring for how Airflow 3 stores it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import openai
from airflow.sdk import BaseOperator, BaseOperatorLink
from airflow.sdk.exceptions import AirflowFailException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from genai_pipeline.clients.openai_compat import make_async_openai_client, make_openai_client
from genai_pipeline.config import Settings, get_settings

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.types import TaskInstanceKey
    from openai.types.fine_tuning import FineTuningJob

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# Not an API status: the API answered 404 for the job (wrong id, or another API or organisation).
MISSING = "missing"
BACKOFF_FACTOR = 1.5
# Cancelling on kill is best effort and Airflow bounds it (triggerer on_kill_timeout, SIGTERM grace).
CANCEL_TIMEOUT_SECONDS = 10.0
# Errors worth another poll: the client has already retried these with its own backoff.
TRANSIENT_ERRORS = (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError)


class Backoff:
    """Poll intervals: ``poll_seconds`` at first and after every status change, x1.5 per unchanged poll, capped."""

    def __init__(self, poll_seconds: float, max_poll_seconds: float) -> None:
        self.poll_seconds = poll_seconds
        self.max_poll_seconds = max(poll_seconds, max_poll_seconds)
        self._status: str | None = None
        self._next = poll_seconds

    def next(self, status: str | None) -> float:
        """Seconds to wait after a poll that saw ``status`` (None: the poll failed, which counts as unchanged)."""
        if status is not None and status != self._status:
            self._status, self._next = status, self.poll_seconds
        interval = self._next
        self._next = min(interval * BACKOFF_FACTOR, self.max_poll_seconds)
        return interval


def job_event(job: FineTuningJob) -> dict[str, Any]:
    """The small, JSON-able summary of a job that the trigger fires and ``execute_complete`` reads."""
    error = job.error
    reason = {"code": error.code, "message": error.message} if error and (error.code or error.message) else None
    return {
        "job_id": job.id,
        "status": job.status,
        "fine_tuned_model": job.fine_tuned_model,
        "error": reason,
        "trained_tokens": job.trained_tokens,
    }


def missing_event(job_id: str, error: openai.NotFoundError) -> dict[str, Any]:
    """The event for a job the API does not know (404), with the API's own reason."""
    return {
        "job_id": job_id,
        "status": MISSING,
        "fine_tuned_model": None,
        "error": _reason(error),
        "trained_tokens": None,
    }


def _reason(error: openai.APIStatusError) -> dict[str, Any]:
    # The client keeps the body's ``error`` object; its message is the API's text without the status prefix.
    body = error.body if isinstance(error.body, dict) else {}
    return {"code": body.get("code") or error.code, "message": body.get("message") or str(error)}


def failure_message(event: dict[str, Any]) -> str:
    """``fine-tuning job ftjob-… failed: <error.message> (<error.code>)``, from a trigger event."""
    verb = {"cancelled": "was cancelled", MISSING: "was not found"}.get(event["status"], event["status"])
    text = f"fine-tuning job {event['job_id']} {verb}"
    error = event.get("error") or {}
    if error.get("message"):
        text += f": {error['message']}"
    if error.get("code"):
        text += f" ({error['code']})"
    return text


class FineTuneJobTrigger(BaseTrigger):
    """Poll a fine-tuning job from the triggerer until it ends; fires one event (see :func:`job_event`).

    The client is built from the triggerer's own environment (``PIPELINE_OPENAI__*``); each run opens and
    closes its own, so ``cleanup`` has nothing to release and, above all, never cancels the job.
    """

    def __init__(self, job_id: str, poll_seconds: float, max_poll_seconds: float) -> None:
        super().__init__()
        self.job_id = job_id
        self.poll_seconds = poll_seconds
        self.max_poll_seconds = max_poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Classpath and kwargs the triggerer re-creates this trigger from."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"job_id": self.job_id, "poll_seconds": self.poll_seconds, "max_poll_seconds": self.max_poll_seconds},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll with backoff; transient API errors wait for the next poll, a 404 ends as ``missing``."""
        backoff = Backoff(self.poll_seconds, self.max_poll_seconds)
        status: str | None = None
        # Building a client loads certificates (blocking for a few hundred ms): off the triggerer's event loop.
        async with await asyncio.to_thread(make_async_openai_client, get_settings()) as client:
            while True:
                try:
                    job = await client.fine_tuning.jobs.retrieve(self.job_id)
                except openai.NotFoundError as error:
                    event = missing_event(self.job_id, error)
                    self.log.warning("Fine-tuning job %s not found: %s", self.job_id, event["error"]["message"])
                    yield TriggerEvent(event)
                    return
                except TRANSIENT_ERRORS as error:
                    interval = backoff.next(None)
                    self.log.warning(
                        "Polling fine-tuning job %s failed (%s: %s); next poll in %.1f s",
                        self.job_id,
                        type(error).__name__,
                        error,
                        interval,
                    )
                    await self._wait(interval)
                    continue
                if job.status != status:
                    self.log.info("Fine-tuning job %s: %s -> %s", self.job_id, status or "(start)", job.status)
                    status = job.status
                if status in TERMINAL:
                    yield TriggerEvent(job_event(job))
                    return
                await self._wait(backoff.next(status))

    async def _wait(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def on_kill(self) -> None:
        """A user killed the task while it was deferred: cancel the job (best effort, bounded)."""
        client = (await asyncio.to_thread(make_async_openai_client, get_settings())).with_options(
            max_retries=1, timeout=CANCEL_TIMEOUT_SECONDS
        )
        async with client:
            try:
                job = await client.fine_tuning.jobs.cancel(self.job_id)
            except openai.APIError as error:
                self.log.warning("Could not cancel fine-tuning job %s: %s", self.job_id, error)
            else:
                self.log.info("Cancelled fine-tuning job %s (status %s)", self.job_id, job.status)


class FineTuneJobLink(BaseOperatorLink):
    """The "Fine-tuning job" button: ``fine_tune.job_url_template`` filled with the job id and the API's base URL.

    Airflow 3 stores extra links as XCom (key :attr:`xcom_key`, ``_link_FineTuneJobLink``): the worker pushes
    :meth:`persist` as soon as the job id is known, and after every run of the task (also when it defers) the
    task runner's ``finalize`` pushes :meth:`get_link` of each of the operator's ``operator_extra_links`` under
    the same key, so ``get_link`` must compute the same URL from the rendered operator. The API server never
    calls this class: it rebuilds the operator's links from the serialized DAG as ``XComOperatorLink(name,
    xcom_key)``, which reads that XCom.
    """

    name = "Fine-tuning job"

    @staticmethod
    def url_for(job_id: str, settings: Settings | None = None) -> str:
        """URL of a job; the template gets ``{job_id}`` and ``{base_url}`` (no trailing slash)."""
        settings = settings or get_settings()
        return settings.fine_tune.job_url_template.format(
            job_id=quote(job_id, safe=""), base_url=settings.openai_base_url.rstrip("/")
        )

    def persist(self, context: Context, job_id: str, settings: Settings | None = None) -> str:
        """Push the link for this task instance now (the button works while the task waits); returns the URL."""
        url = self.url_for(job_id, settings)
        context["ti"].xcom_push(key=self.xcom_key, value=url)
        return url

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """The URL for the operator's rendered ``job_id``; empty while it is unknown (unrendered or blank)."""
        job_id = getattr(operator, "job_id", None)
        if not isinstance(job_id, str) or not job_id.strip() or "{{" in job_id:
            return ""
        return self.url_for(job_id.strip())


class WaitForFineTuneJob(BaseOperator):
    """Wait for a fine-tuning job without holding a worker slot; returns its model, fails with the API's reason.

    :param job_id: The job's id, usually templated from the submitting task's XCom, e.g.
        ``"{{ ti.xcom_pull(task_ids='submit')['job_id'] }}"``.
    :param poll_seconds: First poll interval; default ``fine_tune.poll_seconds``.
    :param max_poll_seconds: Cap of the backed-off interval; default ``fine_tune.max_poll_seconds``.
    """

    template_fields = ("job_id",)
    operator_extra_links = (FineTuneJobLink(),)
    ui_color = "#e8f1fb"

    def __init__(
        self,
        *,
        job_id: str,
        poll_seconds: float | None = None,
        max_poll_seconds: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for name, value in (("poll_seconds", poll_seconds), ("max_poll_seconds", max_poll_seconds)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self.job_id = job_id
        self.poll_seconds = poll_seconds
        self.max_poll_seconds = max_poll_seconds
        self._started_job_id: str | None = None

    def execute(self, context: Context) -> dict[str, Any]:
        """Check the job once; finish now if it has ended, else defer to :class:`FineTuneJobTrigger`."""
        job_id = str(self.job_id or "").strip()
        if not job_id:
            raise AirflowFailException(f"{self.task_id}: job_id rendered empty ({self.job_id!r})")
        settings = get_settings()
        self._started_job_id = job_id
        self.log.info("Fine-tuning job %s: %s", job_id, FineTuneJobLink().persist(context, job_id, settings))
        with make_openai_client(settings) as client:
            try:
                event = job_event(client.fine_tuning.jobs.retrieve(job_id))
            except openai.NotFoundError as error:
                return self.execute_complete(context, missing_event(job_id, error))
            except TRANSIENT_ERRORS as error:
                # The trigger retries these; no reason to fail the task before it starts waiting.
                self.log.warning("Checking fine-tuning job %s failed (%s); deferring anyway", job_id, error)
                event = None
        if event is not None and event["status"] in TERMINAL:
            return self.execute_complete(context, event)
        status = event["status"] if event else "unknown"
        self.log.info("Fine-tuning job %s is %s; deferring to the triggerer", job_id, status)
        poll = settings.fine_tune.poll_seconds if self.poll_seconds is None else self.poll_seconds
        cap = settings.fine_tune.max_poll_seconds if self.max_poll_seconds is None else self.max_poll_seconds
        self.defer(
            trigger=FineTuneJobTrigger(job_id=job_id, poll_seconds=poll, max_poll_seconds=cap),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Succeeded: ``{job_id, fine_tuned_model, trained_tokens}`` (the task's XCom); otherwise fail, no retry.

        A failed, cancelled or missing job stays so; retrying the wait could not change it.
        """
        if event["status"] != "succeeded":
            raise AirflowFailException(failure_message(event))
        self.log.info("Fine-tuning job %s succeeded: %s", event["job_id"], event["fine_tuned_model"])
        return {
            "job_id": event["job_id"],
            "fine_tuned_model": event["fine_tuned_model"],
            "trained_tokens": event["trained_tokens"],
        }

    def on_kill(self) -> None:
        """Killed during the worker's check (deferred, the trigger's ``on_kill`` does it): cancel the job."""
        if not self._started_job_id:
            return
        client = make_openai_client(get_settings()).with_options(max_retries=1, timeout=CANCEL_TIMEOUT_SECONDS)
        with client:
            try:
                client.fine_tuning.jobs.cancel(self._started_job_id)
            except openai.APIError as error:
                self.log.warning("Could not cancel fine-tuning job %s: %s", self._started_job_id, error)
            else:
                self.log.info("Cancelled fine-tuning job %s", self._started_job_id)
