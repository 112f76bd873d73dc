"""Every step by name, and the image that carries it: the single table both runtimes dispatch on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from genai_pipeline.config import Settings, get_settings
from genai_pipeline.steps import ingest

Step = Callable[[Settings, dict[str, Any]], Any]

STEPS: dict[str, Step] = {
    "create_schema": ingest.create_schema,
    "plan": ingest.plan,
    "chunk": ingest.chunk,
    "embed": ingest.embed,
    "load": ingest.load,
    "prune": ingest.prune,
    "report": ingest.report,
}

# Step -> image folder under images/. Light steps share the chunk image (no model, no torch).
STEP_IMAGES: dict[str, str] = {
    "create_schema": "chunk",
    "plan": "chunk",
    "chunk": "chunk",
    "embed": "embed",
    "load": "chunk",
    "prune": "chunk",
    "report": "chunk",
}


def run_step(name: str, payload: dict[str, Any]) -> Any:
    """Run one step with settings from the environment; unknown names fail with the known ones listed."""
    try:
        step = STEPS[name]
    except KeyError:
        raise KeyError(f"unknown step {name!r}; known steps: {', '.join(sorted(STEPS))}") from None
    return step(get_settings(), payload)
