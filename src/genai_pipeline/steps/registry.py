"""Every step by name, and the image that carries it: the single table both runtimes dispatch on.

Steps are named as ``module:function`` and imported only when they run, so parsing a DAG (in the
scheduler, the dag-processor and every task process) does not import Weaviate, NumPy or the models.
"""

from __future__ import annotations

import importlib
from typing import Any

from genai_pipeline.config import get_settings

# Step -> (implementation, image folder under images/). Light steps share the chunk image (no model).
STEPS: dict[str, tuple[str, str]] = {
    "create_schema": ("genai_pipeline.steps.ingest:create_schema", "chunk"),
    "plan": ("genai_pipeline.steps.ingest:plan", "chunk"),
    "chunk": ("genai_pipeline.steps.ingest:chunk", "chunk"),
    "embed": ("genai_pipeline.steps.ingest:embed", "embed"),
    "load": ("genai_pipeline.steps.ingest:load", "chunk"),
    "prune": ("genai_pipeline.steps.ingest:prune", "chunk"),
    "report": ("genai_pipeline.steps.ingest:report", "chunk"),
}


def image_of(name: str) -> str:
    """The image folder that carries a step."""
    return STEPS[known(name)][1]


def known(name: str) -> str:
    """The name itself, or KeyError listing the steps there are."""
    if name not in STEPS:
        raise KeyError(f"unknown step {name!r}; known steps: {', '.join(sorted(STEPS))}")
    return name


def run_step(name: str, payload: dict[str, Any]) -> Any:
    """Run one step with settings from the environment."""
    module, function = STEPS[known(name)][0].split(":")
    return getattr(importlib.import_module(module), function)(get_settings(), payload)
