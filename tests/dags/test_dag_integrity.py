"""Every DAG imports, has no cycles, and is wired as declared (schedules, Assets, mapping)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_all_dags_import(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {
        "ingest_knowledge_base",
        "start",
        "format_examples",
        "evaluate_examples",
        "fine_tune",
        "champion_challenger",
        "generate_content",
    }


def test_no_cycles(dagbag) -> None:
    for dag in dagbag.dags.values():
        dag.check_cycle()  # raises AirflowDagCycleException
        assert len(dag.topological_sort()) == len(dag.tasks)


def test_ingestion_runs_on_cron_or_any_source_asset(dagbag) -> None:
    from airflow.sdk import AssetOrTimeSchedule

    dag = dagbag.dags.get("ingest_knowledge_base")
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert dag.timetable.timetable.expression == "0 3 * * *"
    consumed = asset_names(dag.timetable.asset_condition)
    start = dagbag.dags.get("start")
    emitted = {a.name for t in start.tasks for a in t.outlets}
    assert emitted == {"knowledge_base_source_pipeline-docs", "examples_train", "examples_validation"}
    assert consumed == {"knowledge_base_source_pipeline-docs"}


def test_without_a_cron_ingestion_runs_only_on_source_assets(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk import AssetOrTimeSchedule

    from genai_pipeline.config import Settings
    from genai_pipeline.orchestration.assets import ingest_schedule

    monkeypatch.setenv("PIPELINE_INGEST__SCHEDULE_CRON", "")
    monkeypatch.setenv("PIPELINE_INGEST__SOURCES", '{"a": "/data/a", "b": "/data/b"}')
    schedule = ingest_schedule(Settings())
    assert not isinstance(schedule, AssetOrTimeSchedule)
    assert asset_names(schedule) == {"knowledge_base_source_a", "knowledge_base_source_b"}


def asset_names(condition) -> set[str]:
    """Names inside an Asset, or an ``|``/``&`` combination of them."""
    if hasattr(condition, "objects"):
        return set().union(*(asset_names(item) for item in condition.objects))
    return {condition.name}


def test_batches_are_mapped_through_chunk_embed_load(dagbag) -> None:
    from airflow.sdk.definitions.taskgroup import MappedTaskGroup

    dag = dagbag.dags.get("ingest_knowledge_base")
    group = dag.task_group_dict["ingest_batch"]
    assert isinstance(group, MappedTaskGroup)
    in_group = {t.task_id for t in dag.tasks if t.get_closest_mapped_task_group() is group}
    assert in_group == {"ingest_batch.chunk", "ingest_batch.embed", "ingest_batch.load"}
    assert dag.get_task("ingest_batch.embed").upstream_task_ids == {"ingest_batch.chunk"}
    assert dag.get_task("ingest_batch.load").upstream_task_ids == {"ingest_batch.embed"}
    assert dag.get_task("ingest_batch.chunk").upstream_task_ids == {"plan"}
    # Prune waits for every load (and runs when there was nothing to load); the report runs whatever happened.
    prune = dag.get_task("prune")
    assert prune.upstream_task_ids == {"plan", "ingest_batch.load"}
    assert prune.trigger_rule == "none_failed_min_one_success"
    assert dag.get_task("plan").upstream_task_ids == {"create_schema"}
    report = dag.get_task("report")
    assert [a.name for a in report.outlets] == ["knowledge_base_collection"]
    assert report.upstream_task_ids == {"prune", "ingest_batch.load"}
    assert report.trigger_rule == "all_done"


def test_same_dag_files_produce_pods_in_cluster_mode() -> None:
    script = (
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(DAGS)!r})\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "dag = bag.dags.get('ingest_knowledge_base')\n"
        "image = lambda t: t.partial_kwargs.get('image') if t.is_mapped else getattr(t, 'image', None)\n"
        "tasks = {t.task_id: [t.task_type, image(t)] for t in dag.tasks}\n"
        "for d in ('fine_tune', 'champion_challenger', 'generate_content'):\n"
        "    tasks.update({f'{d}.{t.task_id}': [t.task_type, image(t)] for t in bag.dags[d].tasks})\n"
        "import json; print(json.dumps(tasks))\n"
    )
    env = {
        **os.environ,
        "PIPELINE_RUNTIME__MODE": "kubernetes",
        "PIPELINE_STORE_URI": "/data/store",
        "PIPELINE_RUNTIME__IMAGE_TAG": "3f2a9c0d1b7e",
        # Parsing takes ~30 s on 2 loaded cores, Airflow's default limit per file: a slow machine is no import error.
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
    }
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    tasks = json.loads(out.stdout.strip().splitlines()[-1])
    assert tasks["ingest_batch.embed"][1] == "genai-pipeline/embed:3f2a9c0d1b7e"
    assert tasks["ingest_batch.chunk"][1] == "genai-pipeline/chunk:3f2a9c0d1b7e"
    assert tasks["ingest_batch.load"][1] == "genai-pipeline/control:3f2a9c0d1b7e"
    # Every task that touches Weaviate or the store is a pod: no Airflow process needs to reach either.
    steps = {k: v for k, v in tasks.items() if not k.startswith(("fine_tune.wait", "champion_challenger.decide"))}
    assert {kind for kind, _ in steps.values()} == {"_KubernetesDecoratedOperator"}
    assert tasks["fine_tune.submit_fine_tune"][1] == "genai-pipeline/finetune-submit:3f2a9c0d1b7e"
    assert tasks["champion_challenger.score_models"][1] == "genai-pipeline/generate:3f2a9c0d1b7e"
    assert tasks["generate_content.generate_post"][1] == "genai-pipeline/generate:3f2a9c0d1b7e"
    # The wait is no pod: the triggerer polls the job.
    assert tasks["fine_tune.wait_for_job"][0] == "WaitForFineTuneJob"


def test_the_first_cron_run_is_the_next_tick_not_the_one_just_past(dagbag, monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow first seeing the DAG at 03:02 ran the 03:00 tick at once; a demo's run then queued behind it."""
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables import trigger
    from airflow.timetables.base import TimeRestriction
    from pendulum import datetime

    dag = DagSerialization.from_dict(DagSerialization.to_dict(dagbag.dags["ingest_knowledge_base"]))
    monkeypatch.setattr(trigger, "utcnow", lambda: datetime(2026, 11, 30, 3, 2, tz="UTC"))
    first = dag.timetable.next_dagrun_info(
        last_automated_data_interval=None, restriction=TimeRestriction(earliest=None, latest=None, catchup=False)
    )
    assert first.run_after == datetime(2026, 12, 1, 3, 0, tz="UTC")


def test_fine_tuning_dags_chain_by_assets(dagbag) -> None:
    """Examples (|) -> format -> formatted (|) -> gate -> combined (&) -> fine-tune -> challenger -> champion."""
    from airflow.sdk import AssetAll, AssetAny

    def schedule(dag_id: str):
        return dagbag.dags[dag_id].timetable.asset_condition

    def emitted(dag_id: str) -> set[str]:
        return {a.name for t in dagbag.dags[dag_id].tasks for a in t.outlets}

    assert isinstance(schedule("format_examples"), AssetAny)
    assert asset_names(schedule("format_examples")) == {"examples_train", "examples_validation"}
    assert isinstance(schedule("evaluate_examples"), AssetAny)
    assert asset_names(schedule("evaluate_examples")) == emitted("format_examples")
    assert isinstance(schedule("fine_tune"), AssetAll)
    assert (
        asset_names(schedule("fine_tune")) == emitted("evaluate_examples") == {"combined_train", "combined_validation"}
    )
    assert asset_names(schedule("champion_challenger")) == emitted("fine_tune") == {"challenger_model"}
    assert emitted("champion_challenger") == {"champion_model"}


def test_gate_and_champion_branches(dagbag) -> None:
    gate = dagbag.dags["evaluate_examples"]
    assert gate.get_task("within_budget").downstream_task_ids == {"combine_examples", "over_budget"}
    assert set(gate.params) == {"price_per_million_tokens", "n_epochs", "budget_usd"}
    # Only the within-budget branch publishes anything.
    assert not gate.get_task("over_budget").outlets
    champion = dagbag.dags["champion_challenger"]
    assert champion.get_task("decide").downstream_task_ids == {"promote_challenger", "keep_champion"}
    assert not champion.get_task("keep_champion").outlets


def test_groups_are_mapped_and_the_wait_is_deferrable(dagbag) -> None:
    from genai_pipeline.orchestration.finetune_wait import FineTuneJobLink, WaitForFineTuneJob

    assert dagbag.dags["format_examples"].get_task("format_examples").is_mapped
    tune = dagbag.dags["fine_tune"]
    wait = tune.get_task("wait_for_job")
    assert isinstance(wait, WaitForFineTuneJob)
    assert any(isinstance(link, FineTuneJobLink) for link in wait.operator_extra_links)
    assert tune.get_task("fine_tune_results").upstream_task_ids == {"wait_for_job", "submit_fine_tune"}
    assert set(tune.params) >= {"base_model", "suffix", "n_epochs", "batch_size", "learning_rate_multiplier"}


def test_generation_maps_over_topics_and_follows_a_new_champion(dagbag) -> None:
    dag = dagbag.dags["generate_content"]
    assert dag.get_task("generate_post").is_mapped
    assert [a.name for a in dag.get_task("generate_post").outlets] == ["generated_posts"]
    assert asset_names(dag.timetable.asset_condition) == {"champion_model"}
    assert dag.params["topics"] == [] and set(dag.params) == {"topics", "k", "threshold"}


def test_a_topics_file_is_an_asset_of_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    from genai_pipeline.config import Settings
    from genai_pipeline.orchestration.assets import generation_schedule

    monkeypatch.setenv("PIPELINE_GENERATION__TOPICS_FILE", "/data/topics.txt")
    assert asset_names(generation_schedule(Settings())) == {"generation_topics", "champion_model"}
    monkeypatch.setenv("PIPELINE_GENERATION__REGENERATE_ON_CHAMPION", "false")
    assert asset_names(generation_schedule(Settings())) == {"generation_topics"}


def test_ingestion_opens_with_its_schema_setup_and_closes_with_a_cleanup_teardown(dagbag) -> None:
    """The teardown runs after the report whatever the work did, and its own failure does not fail the run."""
    dag = dagbag.dags.get("ingest_knowledge_base")
    setup, teardown = dag.get_task("create_schema"), dag.get_task("cleanup")
    assert setup.is_setup and teardown.is_teardown and not teardown.on_failure_fail_dagrun
    assert teardown.trigger_rule == "all_done_setup_success"
    assert {"report", "create_schema"} <= teardown.upstream_task_ids


def test_every_task_retries_with_backoff_but_the_verdicts_fail_at_once(dagbag) -> None:
    """Branches, the gate's stop and the wait retried 0 times.

    A verdict (rejected documents, a refused prune, no published post) is the same on a retry, which only
    delayed the failure by minutes of backoff.
    """
    verdicts = {("ingest_knowledge_base", "report"), ("generate_content", "report_posts")}
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            want = 0 if (dag.dag_id, task.task_id) in verdicts else 3
            assert task.retries == want, (dag.dag_id, task.task_id, task.retries)
            assert task.retry_exponential_backoff and task.retry_delay.total_seconds() == 10, task.task_id
    task_ids = {task.task_id for dag in dagbag.dags.values() for task in dag.tasks}
    assert {"over_budget", "update_sources", "wait_for_job"} <= task_ids


def test_every_dag_gets_the_lateness_alert_when_one_is_configured(dagbag) -> None:
    assert all(not dag.deadline for dag in dagbag.dags.values())  # none configured: no alert
    script = (
        "import json; from airflow.dag_processing.dagbag import DagBag; "
        f"bag = DagBag(dag_folder={str(DAGS)!r}); "
        "print(json.dumps({i: [d.interval.total_seconds() for d in (bag.dags[i].deadline or [])] for i in bag.dags}))"
    )
    env = {**os.environ, "PIPELINE_NOTIFY__LATE_AFTER_MINUTES": "45"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    deadlines = json.loads(out.stdout.strip().splitlines()[-1])
    assert deadlines == {dag_id: [2700.0] for dag_id in dagbag.dag_ids}


def test_every_task_of_every_dag_alerts_on_failure_and_runs_one_at_a_time(dagbag) -> None:
    from genai_pipeline.orchestration.notify import PipelineNotifier

    for dag in dagbag.dags.values():
        assert dag.max_active_runs == 1 and dag.catchup is False, dag.dag_id
        for task in dag.tasks:
            callbacks = task.on_failure_callback or []
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert any(isinstance(c, PipelineNotifier) for c in callbacks), (dag.dag_id, task.task_id)


def test_the_fine_tune_dataset_param_takes_only_a_dataset_key(dagbag) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    param = dagbag.dags.get("fine_tune").params.get_param("dataset")
    assert param.resolve("0123456789abcdef") == "0123456789abcdef" and param.resolve("") == ""
    with pytest.raises(ParamValidationError):
        param.resolve("../../reports/ingest")


@pytest.mark.parametrize(
    ("dag_id", "param", "contract", "setting"),
    [
        ("evaluate_examples", "n_epochs", "GateRequest", "fine_tune.n_epochs"),
        ("fine_tune", "n_epochs", "SubmitRequest", "fine_tune.n_epochs"),
        ("fine_tune", "batch_size", "SubmitRequest", "fine_tune.batch_size"),
        ("fine_tune", "learning_rate_multiplier", "SubmitRequest", "fine_tune.learning_rate_multiplier"),
        ("generate_content", "k", "TopicsRequest", "generation.k"),
        ("generate_content", "threshold", "TopicsRequest", "generation.distance_threshold"),
    ],
)
def test_a_dag_param_takes_exactly_what_its_step_and_the_settings_take(
    dagbag, dag_id: str, param: str, contract: str, setting: str
) -> None:
    """A Param wider than its step's contract starts runs that fail in the pod; a narrower one refuses settings."""
    from genai_pipeline.config import Settings
    from genai_pipeline.steps import contracts

    bounds = ("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")

    def keep(schema: dict) -> dict:
        return {key: schema[key] for key in bounds if key in schema}

    section, name = setting.split(".")
    in_dag = keep(dagbag.dags[dag_id].params.get_param(param).schema)
    in_step = keep(getattr(contracts, contract).model_json_schema()["properties"][param])
    in_settings = keep(
        Settings.model_json_schema()["$defs"][f"{section.title().replace('_', '')}Settings"]["properties"][name]
    )
    assert in_dag == in_step == in_settings and ("maximum" in in_dag or "exclusiveMinimum" in in_dag)
