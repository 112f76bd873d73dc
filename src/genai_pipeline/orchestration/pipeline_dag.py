"""The ``@dag`` of every pipeline DAG: what they all share, so no DAG can drift from it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import dag

from genai_pipeline.config import RuntimeSettings, get_settings
from genai_pipeline.orchestration.notify import PipelineNotifier, run_deadline


def retry_policy(runtime: RuntimeSettings) -> dict[str, Any]:
    """Retries with exponential backoff, for every task: steps, branches, the gate's stop, the fine-tune wait."""
    return {
        "retries": runtime.retries,
        "retry_delay": timedelta(seconds=runtime.retry_delay_seconds),
        "retry_exponential_backoff": runtime.retry_exponential_backoff,
        "max_retry_delay": timedelta(seconds=runtime.max_retry_delay_seconds),
    }


def pipeline_dag(**options: Any) -> Any:
    """``@dag`` with the pipeline's defaults; ``options`` (schedule, tags, params, doc_md, ...) add to them.

    One run at a time (steps share the store's run folders and Weaviate), no catch-up of past schedule ticks
    (backfills are explicit), the lateness alert of ``notify.late_after_minutes``, and the retry policy and the
    failure alert on every task (step tasks set the same themselves). A DAG file must still say "airflow" somewhere:
    Airflow's DAG discovery (safe mode) skips a file unless it contains both "airflow" and "dag".
    """
    defaults: dict[str, Any] = {
        "catchup": False,
        "max_active_runs": 1,
        "deadline": run_deadline(),
        "default_args": {"on_failure_callback": [PipelineNotifier()], **retry_policy(get_settings().runtime)},
    }
    return dag(**{**defaults, **options})
