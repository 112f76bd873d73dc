"""Bounds that the settings, the steps' contracts, the DAGs' Params and the web page all check, each typed once.

A bound typed in five places drifts: a DAG would accept what its step then refuses, or the other way round.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, TypeAdapter

# OpenAI's fine-tuning API takes 1..50 epochs and batches of up to 256 examples.
MAX_EPOCHS = 50
Epochs = Annotated[int, Field(ge=1, le=MAX_EPOCHS)]
BatchSize = Annotated[int, Field(ge=1, le=256)]
LearningRateMultiplier = Annotated[float, Field(gt=0)]
# Chunks a post is written from, and how far (cosine distance: 0 same direction, 2 opposite) each may be.
SourcesPerPost = Annotated[int, Field(ge=1, le=50)]
Distance = Annotated[float, Field(gt=0, le=2)]


def param_schema(bounded: Any) -> dict[str, Any]:
    """A bounded type's JSON schema (``type``, ``minimum``, ``maximum``…), the keywords an Airflow ``Param`` takes."""
    return TypeAdapter(bounded).json_schema()
