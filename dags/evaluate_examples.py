"""The evaluation and cost gate: validate every example, count billing tokens, price the job, branch.

Runs when the formatted train OR validation examples change. A bad line is reported with its file and line
and left out (the run fails only when a split has nothing valid). Over budget, the run stops before any
upload and notifies; within budget, the combined files are published and their Assets updated, which
(both together) start the fine-tune. Price, epochs and budget are Params: trigger with other values to
re-price.
"""

from __future__ import annotations

from airflow.sdk import Param, get_current_context, task

from genai_pipeline.bounds import Epochs, param_schema
from genai_pipeline.config import get_settings
from genai_pipeline.orchestration.assets import (
    COMBINED_TRAIN,
    COMBINED_VALIDATION,
    FORMATTED_TRAIN,
    FORMATTED_VALIDATION,
)
from genai_pipeline.orchestration.fine_tune_tasks import budget_branch, stop_over_budget
from genai_pipeline.orchestration.pipeline_dag import pipeline_dag
from genai_pipeline.orchestration.step_task import step_task
from genai_pipeline.steps.decisions import FineTuneTask

TUNE = get_settings().fine_tune
GATE = {
    "run_id": "{{ run_id }}",
    "price_per_million_tokens": "{{ params.price_per_million_tokens }}",
    "n_epochs": "{{ params.n_epochs }}",
    "budget_usd": "{{ params.budget_usd }}",
}


@pipeline_dag(
    schedule=FORMATTED_TRAIN | FORMATTED_VALIDATION,
    tags=["fine-tuning"],
    doc_md=__doc__,
    params={
        "price_per_million_tokens": Param(TUNE.price_per_million_tokens, type="number", minimum=0),
        "n_epochs": Param(TUNE.n_epochs, **param_schema(Epochs)),
        "budget_usd": Param(TUNE.budget_usd, type="number", minimum=0),
    },
)
def evaluate_examples():
    evaluation = step_task("evaluate_examples")(GATE)

    @task.branch
    def within_budget(evaluation: dict) -> str:
        return budget_branch(evaluation)

    @task(task_id=FineTuneTask.OVER_BUDGET)
    def over_budget(evaluation: dict) -> str:
        context = get_current_context()
        return stop_over_budget(evaluation, dag_id=context["dag"].dag_id, run_id=context["run_id"])

    combined = step_task(FineTuneTask.COMBINE_EXAMPLES, outlets=[COMBINED_TRAIN, COMBINED_VALIDATION])(evaluation)
    within_budget(evaluation) >> [combined, over_budget(evaluation)]


evaluate_examples()
