"""The ``@dag`` of every pipeline DAG: what they all share, so no DAG can drift from it."""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag

from genai_pipeline.orchestration.notify import PipelineNotifier, run_deadline


def pipeline_dag(**options: Any) -> Any:
    """``@dag`` with the pipeline's defaults; ``options`` (schedule, tags, params, doc_md, ...) add to them.

    One run at a time (steps share the store's run folders and Weaviate), no catch-up of past schedule ticks
    (backfills are explicit), the lateness alert of ``notify.late_after_minutes``, and the failure alert on
    every task (step tasks set the same notifier themselves). A DAG file must still say "airflow" somewhere:
    Airflow's DAG discovery (safe mode) skips a file unless it contains both "airflow" and "dag".
    """
    defaults: dict[str, Any] = {
        "catchup": False,
        "max_active_runs": 1,
        "deadline": run_deadline(),
        "default_args": {"on_failure_callback": [PipelineNotifier()]},
    }
    return dag(**{**defaults, **options})
