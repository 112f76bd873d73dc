"""Every step by name, its image and its typed contract: the single table both runtimes dispatch on.

Steps are named as ``module:function`` and imported only when they run, so parsing a DAG (in the
scheduler, the dag-processor and every task process) does not import Weaviate, NumPy or the models.
:func:`run_step` checks a step's input before it runs and its output after, in the Airflow worker and in a
step's pod alike; the step-task factory checks the same models on the Airflow side of a pod.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter

from genai_pipeline.clients.context import service_context
from genai_pipeline.config import get_settings
from genai_pipeline.steps import contracts as c
from genai_pipeline.steps.context import StepContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepSpec:
    """Where a step's code is, which image carries it, and what goes in and comes out."""

    target: str
    image: str
    takes: type[BaseModel]
    gives: Any

    def check_input(self, payload: Any) -> BaseModel:
        """The payload as the step's input model, or a ValidationError naming what is wrong."""
        return self.takes.model_validate(payload.model_dump() if isinstance(payload, BaseModel) else payload)

    def check_output(self, result: Any) -> Any:
        """The result as JSON-ready data, after checking it against the step's output model."""
        adapter = TypeAdapter(self.gives)
        return adapter.dump_python(adapter.validate_python(_plain(result)), mode="json")


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


# Ingestion: chunking in the tokenizer-only chunk image, embedding in the embed image (onnxruntime, the model),
# the Weaviate-facing steps in the control image (weaviate-client, gRPC; no tokenizer, no model).
STEPS: dict[str, StepSpec] = {
    "create_schema": StepSpec("genai_pipeline.steps.ingest:create_schema", "control", c.Empty, c.SchemaResult),
    "plan": StepSpec("genai_pipeline.steps.ingest:plan", "control", c.RunRequest, list[c.BatchTask]),
    "chunk": StepSpec("genai_pipeline.steps.ingest:chunk", "chunk", c.BatchTask, c.Chunked),
    "embed": StepSpec("genai_pipeline.steps.ingest:embed", "embed", c.Chunked, c.Embedded),
    "load": StepSpec("genai_pipeline.steps.ingest:load", "control", c.Embedded, c.Loaded),
    "prune": StepSpec("genai_pipeline.steps.ingest:prune", "control", c.RunRequest, c.Pruned),
    "report": StepSpec("genai_pipeline.steps.ingest:report", "control", c.RunRequest, c.Summary),
    "cleanup": StepSpec("genai_pipeline.steps.ingest:cleanup", "control", c.RunRequest, c.Cleaned),
    # Fine-tuning data and results: the finetune image (BPE token counts, the loss plot, the API client); the
    # submission alone in the API-only finetune-submit image (openai, pydantic, the store).
    "list_example_groups": StepSpec(
        "genai_pipeline.steps.examples:list_groups", "finetune", c.RunRequest, list[c.GroupTask]
    ),
    "format_examples": StepSpec("genai_pipeline.steps.examples:format_group", "finetune", c.GroupTask, c.Formatted),
    "format_report": StepSpec("genai_pipeline.steps.examples:format_report", "finetune", c.RunRequest, c.FormatSummary),
    "evaluate_examples": StepSpec("genai_pipeline.steps.gate:evaluate", "finetune", c.GateRequest, c.Evaluation),
    "combine_examples": StepSpec("genai_pipeline.steps.gate:combine", "finetune", c.Evaluation, c.Dataset),
    "submit_fine_tune": StepSpec(
        "genai_pipeline.steps.finetune:submit", "finetune-submit", c.SubmitRequest, c.Submitted
    ),
    "fine_tune_results": StepSpec("genai_pipeline.steps.finetune:results", "finetune", c.Submitted, c.Challenger),
    # Scoring asks models for answers: the generate image (chat completions client).
    "score_models": StepSpec("genai_pipeline.steps.champion:score", "generate", c.ScoreRequest, c.Scored),
    "promote_challenger": StepSpec("genai_pipeline.steps.champion:promote", "generate", c.Scored, c.Decision),
    "keep_champion": StepSpec("genai_pipeline.steps.champion:keep_champion", "generate", c.Scored, c.Decision),
    # Generation: retrieval (the collection's embedding model) and the chat model; the generate image.
    "plan_topics": StepSpec(
        "genai_pipeline.steps.generation:plan_topics", "generate", c.TopicsRequest, list[c.TopicTask]
    ),
    "generate_post": StepSpec(
        "genai_pipeline.steps.generation:generate_post", "generate", c.TopicTask, c.GeneratedPost
    ),
    "report_posts": StepSpec(
        "genai_pipeline.steps.generation:report_posts", "generate", c.TopicsRequest, c.PostsSummary
    ),
}


def image_of(name: str) -> str:
    """The image folder that carries a step."""
    return spec(name).image


def spec(name: str) -> StepSpec:
    """A step's entry, or KeyError listing the steps there are."""
    if name not in STEPS:
        raise KeyError(f"unknown step {name!r}; known steps: {', '.join(sorted(STEPS))}")
    return STEPS[name]


def run_step(name: str, payload: Any, context: StepContext | None = None) -> Any:
    """Run one step, input checked and output checked, on the configured services (settings from the environment).

    Tests pass a context of in-memory services.

    Ends with one log line: the step, its seconds and the numbers its result carries (counts, seconds, bytes).
    """
    entry = spec(name)
    module, function = entry.target.split(":")
    step = getattr(importlib.import_module(module), function)
    started = time.perf_counter()
    context = context or service_context(get_settings())
    result = entry.check_output(step(context, entry.check_input(payload)))
    log.info("step %s done in %.2f s: %s", name, time.perf_counter() - started, result_summary(result))
    return result


def result_summary(result: Any, limit: int = 10) -> str:
    """The numbers of a step's result, ``key=value`` (a list: its length), for the step's one-line log."""
    if isinstance(result, list):
        return f"{len(result)} items"
    if not isinstance(result, dict):
        return type(result).__name__
    numbers = [
        f"{key}={len(value) if isinstance(value, list) else value}"
        for key, value in result.items()
        if isinstance(value, int | float | list) and not isinstance(value, bool)
    ]
    return ", ".join(numbers[:limit]) or "no counts"
