"""The Airflow-side decisions of the fine-tuning DAGs: which branch runs, and the budget stop.

They read a step's descriptor (XCom) and decide; the steps themselves stay free of Airflow. Kept out of the
DAG files so they are tested as plain functions.
"""

from __future__ import annotations

import logging
from typing import Any

from genai_pipeline.config import get_settings
from genai_pipeline.orchestration.notify import notify_budget_stop
from genai_pipeline.steps.contracts import Evaluation, Scored
from genai_pipeline.steps.decisions import FineTuneTask

log = logging.getLogger(__name__)


def budget_branch(evaluation: dict[str, Any]) -> str:
    """Publish the combined files when the estimate is within budget, else stop before any upload."""
    return (
        FineTuneTask.COMBINE_EXAMPLES
        if Evaluation.model_validate(evaluation).within_budget
        else FineTuneTask.OVER_BUDGET
    )


def stop_over_budget(evaluation: dict[str, Any], *, dag_id: str, run_id: str) -> str:
    """Log why the run stopped and send the notification; nothing was uploaded or published."""
    gate = Evaluation.model_validate(evaluation)
    message = (
        f"fine-tuning stopped before any upload: estimated ${gate.estimated_usd:.2f} is over the budget of "
        f"${gate.budget_usd:.2f} ({gate.billing_tokens:,} tokens x {gate.n_epochs} epochs at "
        f"${gate.price_per_million_tokens:.2f}/1M); raise the budget_usd Param or trim the examples"
    )
    log.warning(message)
    estimate = gate.model_dump(
        include={"billing_tokens", "n_epochs", "price_per_million_tokens", "estimated_usd", "budget_usd"}
    )
    notify_budget_stop(
        get_settings(), dag_id=dag_id, run_id=run_id, estimate=estimate, task_id=FineTuneTask.OVER_BUDGET
    )
    return message


def champion_branch(scored: dict[str, Any]) -> str:
    """Promote when there is no champion or the challenger won; otherwise keep the champion."""
    decision = Scored.model_validate(scored)
    log.info("%s: %s", decision.decision, decision.reason)
    return FineTuneTask.PROMOTE_CHALLENGER if decision.decision.promotes else FineTuneTask.KEEP_CHAMPION
