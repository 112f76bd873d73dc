"""The Assets that chain the pipeline's DAGs, and the ingestion schedule built from settings."""

from __future__ import annotations

import datetime
from typing import Any

from airflow.sdk import Asset, AssetAny, AssetOrTimeSchedule, CronTriggerTimetable

from genai_pipeline.config import Settings, get_settings


def source_uri(name: str) -> str:
    """The URI of a knowledge-base source's Asset (what another system posts an event for)."""
    return f"kb-source://{name}"


def source_assets(settings: Settings | None = None) -> list[Asset]:
    """One Asset per knowledge-base source; updating any of them re-runs ingestion."""
    settings = settings or get_settings()
    return [
        Asset(name=f"knowledge_base_source_{name}", uri=source_uri(name), group="knowledge_base")
        for name in settings.ingest.sources
    ]


def knowledge_base_asset(settings: Settings | None = None) -> Asset:
    """The loaded Weaviate collection; fine-tuning and generation DAGs schedule on it."""
    settings = settings or get_settings()
    return Asset(
        name="knowledge_base_collection",
        uri=f"weaviate://{settings.weaviate.host}:{settings.weaviate.http_port}/{settings.weaviate.collection}",
        group="knowledge_base",
    )


def ingest_schedule(settings: Settings | None = None) -> AssetOrTimeSchedule | Asset | AssetAny:
    """A daily cron OR an update of any source Asset (combined with ``|``); only the Assets without a cron."""
    settings = settings or get_settings()
    assets = source_assets(settings)
    condition = assets[0]
    for asset in assets[1:]:
        condition = condition | asset
    if not settings.ingest.schedule_cron:
        return condition
    # run_immediately=0: the first scheduled run is the next tick. Left at its default, Airflow runs the
    # latest past tick at once if it is within a tenth of the interval (a DAG first seen at 03:02 ran 03:00).
    cron = CronTriggerTimetable(settings.ingest.schedule_cron, timezone="UTC", run_immediately=datetime.timedelta(0))
    return AssetOrTimeSchedule(timetable=cron, assets=condition)


def _fine_tune_asset(name: str, uri: str) -> Asset:
    return Asset(name=name, uri=uri, group="fine_tuning")


# Example post folders: updating either re-formats both (cheap) and so re-runs the gate.
EXAMPLES_TRAIN = _fine_tune_asset("examples_train", "ft-examples://train")
EXAMPLES_VALIDATION = _fine_tune_asset("examples_validation", "ft-examples://validation")
# Chat-format JSONL per split, written by format_examples.
FORMATTED_TRAIN = _fine_tune_asset("formatted_examples_train", "ft-formatted://train")
FORMATTED_VALIDATION = _fine_tune_asset("formatted_examples_validation", "ft-formatted://validation")
# The combined files the cost gate published; fine-tuning runs when both are updated.
COMBINED_TRAIN = _fine_tune_asset("combined_train", "ft-dataset://train")
COMBINED_VALIDATION = _fine_tune_asset("combined_validation", "ft-dataset://validation")
# A new fine-tuned model with its metrics; the promoted one.
CHALLENGER = _fine_tune_asset("challenger_model", "ft-model://challenger")
CHAMPION = _fine_tune_asset("champion_model", "ft-model://champion")


def topics_file_asset(settings: Settings | None = None) -> Asset | None:
    """The topics file, when one is configured: updating it regenerates its posts."""
    settings = settings or get_settings()
    path = settings.generation.topics_file
    return (
        Asset(name="generation_topics", uri=f"topics-file://{path.lstrip('/')}", group="generation") if path else None
    )


# The folder of generated posts (one Markdown file per topic).
POSTS = Asset(name="generated_posts", uri="posts://generated", group="generation")


def generation_schedule(settings: Settings | None = None) -> Any:
    """Topics file OR (behind a setting) a new champion; none of them: by hand only."""
    settings = settings or get_settings()
    assets = [a for a in (topics_file_asset(settings),) if a is not None]
    if settings.generation.regenerate_on_champion:
        assets.append(CHAMPION)
    if not assets:
        return None
    condition = assets[0]
    for asset in assets[1:]:
        condition = condition | asset
    return condition
