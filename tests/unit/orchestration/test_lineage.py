"""The step tasks' OpenLineage extractor: found by the provider for both runtimes, datasets from the result."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from airflow.providers.openlineage import conf
from airflow.providers.openlineage.extractors.manager import ExtractorManager
from airflow.sdk import DAG, task

from genai_pipeline.config import Settings
from genai_pipeline.local.airflow_env import openlineage_env
from genai_pipeline.orchestration.lineage import StepLineageExtractor
from genai_pipeline.orchestration.step_task import step_task
from genai_pipeline.steps import lineage
from genai_pipeline.steps.contracts import MAX_DESCRIPTOR_BYTES, BatchTask, Chunked

RESULT = {
    "model": "ft:x",
    "lineage": {
        "inputs": [{"namespace": "http://api/v1", "name": "fine_tuning/jobs/ftjob-1"}],
        "outputs": [{"namespace": "http://api/v1", "name": "models/ft:x"}],
    },
}


class FakeTaskInstance:
    """What the listener hands the extractor: it reads the step's result as the task's own XCom."""

    task_id, map_index = "fine_tune_results", -1

    def __init__(self, result: object) -> None:
        self.result, self.asked = result, None

    def xcom_pull(self, task_ids: str, map_indexes: int) -> object:
        self.asked = (task_ids, map_indexes)
        return self.result


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[ExtractorManager]:
    for key, value in openlineage_env(Settings(home=tmp_path)).items():
        monkeypatch.setenv(key, value)
    # The provider may cache its settings per process (not when it sees a test run).
    forget = getattr(conf.custom_extractors, "cache_clear", lambda: None)
    forget()
    yield ExtractorManager()
    forget()


def test_the_deployment_registers_the_extractor_for_step_tasks_in_both_runtimes(
    manager: ExtractorManager, cluster_settings: Settings
) -> None:
    for settings in (Settings(), cluster_settings):
        with DAG(dag_id="lineage_test", schedule=None):
            operator = step_task("fine_tune_results", settings=settings)({"job_id": "x"}).operator
        assert manager.get_extractor_class(operator) is StepLineageExtractor


def test_the_step_result_becomes_the_event_datasets(manager: ExtractorManager) -> None:
    with DAG(dag_id="lineage_test", schedule=None):
        operator = step_task("fine_tune_results", settings=Settings())({"job_id": "x"}).operator
    ti = FakeTaskInstance(RESULT)
    found = StepLineageExtractor(operator).extract_on_complete(ti)
    assert ti.asked == ("fine_tune_results", -1)
    assert [(d.namespace, d.name) for d in found.inputs] == [("http://api/v1", "fine_tuning/jobs/ftjob-1")]
    assert [(d.namespace, d.name) for d in found.outputs] == [("http://api/v1", "models/ft:x")]
    # A plan's list and a failed step name nothing, and never fail the task's event.
    assert StepLineageExtractor(operator).extract_on_complete(FakeTaskInstance([{"batch": 0}])).inputs == []
    assert StepLineageExtractor(operator).extract_on_failure(ti).outputs == []


def test_other_python_tasks_get_events_without_datasets(manager: ExtractorManager) -> None:
    with DAG(dag_id="lineage_test", schedule=None):
        operator = task(lambda: RESULT, task_id="plain")().operator
    assert StepLineageExtractor(operator).extract_on_complete(FakeTaskInstance(RESULT)).outputs == []


def test_a_batch_of_many_documents_names_its_folders_and_stays_a_small_descriptor() -> None:
    documents = [lineage.document({"docs": "/srv/docs"}, f"docs/very/long/folder/name/{n:06d}.md") for n in range(2000)]
    named = lineage.bounded(documents, folders=[lineage.location("/srv/docs")] * 2000)
    assert named == [lineage.location("/srv/docs")]
    batch = BatchTask(run_key="r", batch=0, docs=2000, bytes=1, label="b0")
    chunked = Chunked(**batch.model_dump(), chunks=1, lineage=lineage.lineage(named, documents[:1]))
    assert len(chunked.model_dump_json()) < MAX_DESCRIPTOR_BYTES
    few = lineage.bounded(documents[:3], folders=[])
    assert [d.name for d in few] == [f"/srv/docs/very/long/folder/name/{n:06d}.md" for n in range(3)]


def test_dataset_names_follow_the_openlineage_naming_spec() -> None:
    assert lineage.location("s3://bucket/kb/a.md") == lineage.DatasetRef(namespace="s3://bucket", name="kb/a.md")
    assert lineage.location("file:///srv/a.md") == lineage.DatasetRef(namespace="file", name="/srv/a.md")
    assert lineage.document({}, "gone/a.md") == lineage.DatasetRef(namespace="kb-source://gone", name="a.md")


@pytest.mark.parametrize(
    ("url", "namespace", "name"),
    [
        ("https://ci:tok-3f9a@api.example.com/v1?sig=abc", "https://api.example.com", "/v1"),
        ("s3://AKIAKEY:s3cr3t@bucket/kb/a.md", "s3://bucket", "kb/a.md"),
        ("http://user@weaviate:8080", "http://weaviate:8080", "/"),
    ],
)
def test_a_dataset_name_never_carries_the_credentials_of_its_url(url: str, namespace: str, name: str) -> None:
    assert lineage.location(url) == lineage.DatasetRef(namespace=namespace, name=name)


def test_lineage_can_be_switched_off_or_sent_to_a_backend(tmp_path) -> None:
    assert openlineage_env(Settings(home=tmp_path, lineage={"enabled": False})) == {
        "AIRFLOW__OPENLINEAGE__DISABLED": "True"
    }
    http = {"type": "http", "url": "http://marquez:5000"}
    env = openlineage_env(Settings(home=tmp_path, lineage={"transport": http}))
    assert env["AIRFLOW__OPENLINEAGE__TRANSPORT"] == '{"type": "http", "url": "http://marquez:5000"}'
    assert "PIPELINE_LINEAGE__TRANSPORT" not in Settings(lineage={"transport": http}).public_env()
