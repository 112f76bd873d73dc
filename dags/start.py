"""Manual start: mark every knowledge-base source as updated, which triggers ingestion."""

from __future__ import annotations

from airflow.sdk import dag, task

from genai_pipeline.orchestration.assets import source_assets

SOURCES = source_assets()


@dag(schedule=None, catchup=False, tags=["knowledge-base"])
def start():
    @task(outlets=SOURCES)
    def update_sources() -> list[str]:
        """Emit an Asset event per source; the scheduler then runs the DAGs scheduled on them."""
        return [asset.name for asset in SOURCES]

    update_sources()


start()
