"""Fine-tune on the combined files: an idempotent submission, a deferred wait, then metrics and a plot.

Scheduled on combined-train AND combined-validation. The submission runs in the ``finetune`` image; its key
(files, base model, hyperparameters) finds a job already made, so a retry or re-run never submits twice.
The wait holds no worker slot: a trigger in the triggerer polls the job. The results step writes the
metrics JSON, the loss plot and the lineage manifest, and updates the challenger Asset.
"""

from __future__ import annotations

from airflow.sdk import Param

from genai_pipeline.bounds import BatchSize, Epochs, LearningRateMultiplier, param_schema
from genai_pipeline.config import get_settings
from genai_pipeline.orchestration.assets import CHALLENGER, COMBINED_TRAIN, COMBINED_VALIDATION
from genai_pipeline.orchestration.finetune_wait import WaitForFineTuneJob
from genai_pipeline.orchestration.pipeline_dag import pipeline_dag
from genai_pipeline.orchestration.step_task import step_task
from genai_pipeline.steps.finetune_store import DATASET_KEY_PATTERN

TUNE = get_settings().fine_tune
SUBMIT = {
    "run_id": "{{ run_id }}",
    **{name: f"{{{{ params.{name} }}}}" for name in ("base_model", "suffix", "n_epochs", "batch_size")},
    "learning_rate_multiplier": "{{ params.learning_rate_multiplier }}",
    "dataset": "{{ params.dataset }}",
}


@pipeline_dag(
    schedule=COMBINED_TRAIN & COMBINED_VALIDATION,
    tags=["fine-tuning"],
    doc_md=__doc__,
    params={
        "base_model": Param(TUNE.base_model, type="string", minLength=1),
        "suffix": Param(TUNE.suffix, type="string", maxLength=64),
        "n_epochs": Param(TUNE.n_epochs, **param_schema(Epochs)),
        "batch_size": Param(TUNE.batch_size, **param_schema(BatchSize)),
        "learning_rate_multiplier": Param(TUNE.learning_rate_multiplier, **param_schema(LearningRateMultiplier)),
        "dataset": Param(
            "", type="string", pattern=DATASET_KEY_PATTERN, description="a stored dataset key; empty: the latest"
        ),
    },
)
def fine_tune():
    submitted = step_task("submit_fine_tune")(SUBMIT)
    waited = WaitForFineTuneJob(
        task_id="wait_for_job", job_id="{{ ti.xcom_pull(task_ids='submit_fine_tune')['job_id'] }}"
    )
    submitted >> waited >> step_task("fine_tune_results", outlets=[CHALLENGER])(submitted)


fine_tune()
