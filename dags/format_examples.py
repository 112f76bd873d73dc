"""Example posts → chat-format JSONL, one mapped task per group folder (``train/short``, ``validation/long``).

Runs when the train OR validation example folders are updated (their Airflow Assets). Each post becomes a
system / user / assistant example; a file that cannot be a post is reported and left out. The report
publishes this run's groups as the formatted set and updates both formatted Assets, which trigger the gate.
"""

from __future__ import annotations

from genai_pipeline.orchestration.assets import (
    EXAMPLES_TRAIN,
    EXAMPLES_VALIDATION,
    FORMATTED_TRAIN,
    FORMATTED_VALIDATION,
)
from genai_pipeline.orchestration.pipeline_dag import pipeline_dag
from genai_pipeline.orchestration.step_task import step_task

RUN = {"run_id": "{{ run_id }}"}


@pipeline_dag(
    schedule=EXAMPLES_TRAIN | EXAMPLES_VALIDATION,
    tags=["fine-tuning"],
    doc_md=__doc__,
)
def format_examples():
    groups = step_task("list_example_groups")(RUN)
    formatted = step_task("format_examples").expand(groups)
    formatted >> step_task("format_report", outlets=[FORMATTED_TRAIN, FORMATTED_VALIDATION])(RUN)


format_examples()
