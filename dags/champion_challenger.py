"""Champion/challenger: score the new model and the champion on one held-out set, then promote or keep.

Triggered by the challenger Asset. Both models answer the same held-out prompts (each with its numbered
sources) greedily and get the same score: the weighted mean of fact coverage, citations and groundedness, with
answer token F1 as the tie-break; a job's own validation figures are never compared. No champion or a better
challenger: the champion record is written (history kept) and the champion Asset updated.
A run's conf may name another challenger: ``{"challenger": "<model id>"}``.
"""

from __future__ import annotations

from airflow.sdk import task

from genai_pipeline.orchestration.assets import CHALLENGER, CHAMPION
from genai_pipeline.orchestration.fine_tune_tasks import champion_branch
from genai_pipeline.orchestration.pipeline_dag import pipeline_dag
from genai_pipeline.orchestration.step_task import step_task
from genai_pipeline.steps.decisions import FineTuneTask

SCORE = {"run_id": "{{ run_id }}", "options": "{{ (dag_run.conf or {}) | tojson }}"}


@pipeline_dag(
    schedule=CHALLENGER,
    tags=["fine-tuning"],
    doc_md=__doc__,
)
def champion_challenger():
    scored = step_task("score_models")(SCORE)

    @task.branch
    def decide(scored: dict) -> str:
        return champion_branch(scored)

    promoted = step_task(FineTuneTask.PROMOTE_CHALLENGER, outlets=[CHAMPION])(scored)
    kept = step_task(FineTuneTask.KEEP_CHAMPION)(scored)
    decide(scored) >> [promoted, kept]


champion_challenger()
