"""OpenLineage for every step task: the step's own ``lineage`` result, turned into the task's event.

The OpenLineage provider's listener emits a START and a COMPLETE (or FAIL) event for every task. For a
step task this extractor fills in the datasets: it reads the step's result (the task's XCom, the same in
the worker and for a pod) and takes the ``lineage`` the step wrote there, so a pod needs no lineage client
and there is one lineage path. Register it with ``[openlineage] extractors`` (the local deployment and
the chart do); the transport, namespace and the rest are Airflow's ``[openlineage]`` settings.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.openlineage.extractors.base import BaseExtractor, OperatorLineage
from openlineage.client.event_v2 import InputDataset, OutputDataset

# The operators the step-task factory makes: ``@task`` in the worker, ``@task.kubernetes`` as a pod.
STEP_OPERATORS = ("_PythonDecoratedOperator", "_KubernetesDecoratedOperator")


def operator_lineage(result: Any) -> OperatorLineage:
    """The datasets a step's result names (nothing for a result without ``lineage``, such as a plan's list)."""
    found = result.get("lineage") if isinstance(result, dict) else None
    if not isinstance(found, dict):
        return OperatorLineage()
    return OperatorLineage(
        inputs=[InputDataset(namespace=d["namespace"], name=d["name"]) for d in found.get("inputs", [])],
        outputs=[OutputDataset(namespace=d["namespace"], name=d["name"]) for d in found.get("outputs", [])],
    )


class StepLineageExtractor(BaseExtractor):
    """Datasets of a step task from its result; other ``@task`` functions get an event without datasets."""

    @classmethod
    def get_operator_classnames(cls) -> list[str]:
        """The operator classes the step-task factory uses."""
        return list(STEP_OPERATORS)

    def _execute_extraction(self) -> OperatorLineage | None:
        # At start the step has not said what it will read: the START event carries the job and run only.
        return OperatorLineage()

    def extract_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """The step's result, as its XCom, names what it read and wrote."""
        if "step" not in (getattr(self.operator, "op_kwargs", None) or {}):
            return OperatorLineage()
        result = task_instance.xcom_pull(task_ids=task_instance.task_id, map_indexes=task_instance.map_index)
        return operator_lineage(result)

    def extract_on_failure(self, task_instance: Any) -> OperatorLineage | None:
        """A failed step returned nothing: its FAIL event names no datasets."""
        return OperatorLineage()
