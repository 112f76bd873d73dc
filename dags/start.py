"""Manual start: mark every knowledge-base source and both example folders as updated.

The scheduler then runs ingestion and the fine-tuning path (formatting, gate, fine-tune, champion/challenger),
each DAG started by the Asset events of the one before.
"""

from __future__ import annotations

from airflow.sdk import task

from genai_pipeline.orchestration.assets import EXAMPLES_TRAIN, EXAMPLES_VALIDATION, source_assets
from genai_pipeline.orchestration.pipeline_dag import pipeline_dag

SOURCES = [*source_assets(), EXAMPLES_TRAIN, EXAMPLES_VALIDATION]


@pipeline_dag(schedule=None, tags=["knowledge-base", "fine-tuning"])
def start():
    @task(outlets=SOURCES)
    def update_sources() -> list[str]:
        """Emit an Asset event per source and example folder; the scheduler runs the DAGs scheduled on them."""
        return [asset.name for asset in SOURCES]

    update_sources()


start()
