"""The pipeline's Airflow plugin, registered through the ``airflow.plugins`` entry point.

It lists the operator extra links the pipeline defines. Airflow 3 does not need a link class to show a link:
the serialized DAG keeps each link's name and XCom key and the API server reads the URL the worker pushed
(see :class:`~genai_pipeline.orchestration.finetune_wait.FineTuneJobLink`); registering the link keeps it
known to ``airflow plugins`` and to any Airflow that resolves link classes through plugins.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from genai_pipeline.orchestration.finetune_wait import FineTuneJobLink


class GenAIPipelinePlugin(AirflowPlugin):
    """Extra links of the pipeline's operators."""

    name = "genai_pipeline"
    operator_extra_links = [FineTuneJobLink()]
