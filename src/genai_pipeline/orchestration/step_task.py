"""The step-task factory: the only place that turns a pipeline step into an Airflow task.

DAG files say *which* step runs on *which* descriptor; this module decides *where*: in the Airflow
worker (embedded mode) or as a hardened pod from the step's image (``@task.kubernetes``). One setting,
``PIPELINE_RUNTIME__MODE``, switches; the DAG files are the same in both modes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from airflow.sdk import task

from genai_pipeline.config import RunMode, Settings, get_settings
from genai_pipeline.orchestration.notify import PipelineNotifier
from genai_pipeline.orchestration.pipeline_dag import retry_policy
from genai_pipeline.steps.registry import spec

# Rendered after each mapped instance runs: the batch label instead of a bare index in the UI.
MAP_INDEX_TEMPLATE = "{{ task.op_kwargs['payload'].get('label', '') }}"


def run_pipeline_step(step: str, payload: dict[str, Any]) -> Any:
    """Run a step by name. In a pod only this function's source is shipped, so it imports inside."""
    import logging

    from genai_pipeline.steps.registry import run_step

    # In a pod nothing configures logging and the steps' INFO lines would be lost; in a worker this is a no-op.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_step(step, payload)


def check_input(step: str, context: Any) -> None:
    """Airflow's side of a step's contract: the rendered descriptor must fit before a pod is started for it."""
    spec(step).check_input(context["task"].op_kwargs["payload"])


def check_output(step: str, context: Any, result: Any) -> None:
    """Airflow's side again: what came back from the pod (or the worker) must be the step's output model."""
    spec(step).check_output(result)


@dataclass(frozen=True)
class StepTask:
    """A step bound to its Airflow task: call it with a descriptor (inside a mapped group: one per batch)."""

    step: str
    decorated: Any

    def __call__(self, payload: Any) -> Any:
        """One task instance for one descriptor."""
        return self.decorated(step=self.step, payload=payload)

    def expand(self, payloads: Any) -> Any:
        """One mapped task instance per descriptor of a list (an upstream step's output)."""
        return self.decorated.partial(step=self.step).expand(payload=payloads)


def step_task(step: str, *, settings: Settings | None = None, **task_kwargs: Any) -> StepTask:
    """Declare "run this step" for a DAG; retries, backoff and concurrency come from settings."""
    image = spec(step).image
    settings = settings or get_settings()
    runtime = settings.runtime
    options: dict[str, Any] = {
        "task_id": step,
        **retry_policy(runtime),
        "max_active_tis_per_dag": runtime.concurrency.get(step, runtime.max_active_tis_per_dag),
        "map_index_template": MAP_INDEX_TEMPLATE,
        "pre_execute": partial(check_input, step),
        "post_execute": partial(check_output, step),
        # A step that fails for good is reported to the alert channels (webhook, email) that are configured.
        "on_failure_callback": [PipelineNotifier()],
        **task_kwargs,
    }
    if runtime.mode is RunMode.KUBERNETES:
        from genai_pipeline.orchestration.pods import explain_pod_failure, pod_options

        options.setdefault("on_retry_callback", explain_pod_failure)
        options["on_failure_callback"] = [explain_pod_failure, *options["on_failure_callback"]]
        decorated = task.kubernetes(**options, **pod_options(settings, step, image))(run_pipeline_step)
    else:
        decorated = task(**options)(run_pipeline_step)
    return StepTask(step, decorated)
