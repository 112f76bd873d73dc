"""Knowledge-base ingestion: documents in, chunks with vectors out in Weaviate.

Runs daily or as soon as any knowledge-base source Asset is updated. The plan step skips documents
already loaded whole and cuts the rest into batches of about equal bytes; a task group of chunk → embed →
load is mapped over those batches, so task instances grow with batches, never with chunks. Prune runs only
after every batch has loaded; the report runs whatever happened, stores the summary and fails the run
when something must be looked at. ``create_schema`` is the run's setup and ``cleanup`` its teardown: the
run's temporary files in the store are removed even when the work fails. A run's conf may set the options of
``RunOptions`` (``pipeline ingest`` does: its own sources, a dry run, the prune guards).
"""

from __future__ import annotations

from airflow.sdk import TriggerRule, task_group

from genai_pipeline.orchestration.assets import ingest_schedule, knowledge_base_asset
from genai_pipeline.orchestration.pipeline_dag import pipeline_dag
from genai_pipeline.orchestration.step_task import step_task

RUN = {"run_id": "{{ run_id }}", "options": "{{ (dag_run.conf or {}) | tojson }}"}


@pipeline_dag(
    # No start_date: the cron's first run is its next tick (the timetable says so), never a past one.
    schedule=ingest_schedule(),
    tags=["knowledge-base", "weaviate"],
    doc_md=__doc__,
)
def ingest_knowledge_base():
    # Creates the collection when it is missing, else does nothing: a step like the others, so no Airflow
    # process ever needs to reach Weaviate (in kubernetes mode only step pods do).
    schema = step_task("create_schema")({})
    batches = step_task("plan")(RUN)
    schema >> batches

    # A mapped group links chunk[i] -> embed[i] -> load[i] per batch, so batch i+1 is chunked and batch
    # i-1 loaded while batch i embeds (three mapped tasks over each other's output would run stage by stage).
    @task_group
    def ingest_batch(batch):
        return step_task("load")(step_task("embed")(step_task("chunk")(batch)))

    loaded = ingest_batch.expand(batch=batches)
    # After every load (none failed); also when there was nothing to load (the mapped group is skipped).
    pruned = step_task("prune", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)(RUN)
    [batches, loaded] >> pruned
    # The report's verdict (rejected documents, a missing source, a refused prune) is a decision over the
    # stored records: a retry reaches the same one, minutes of backoff later.
    report = step_task("report", trigger_rule=TriggerRule.ALL_DONE, outlets=[knowledge_base_asset()], retries=0)(RUN)
    [loaded, pruned] >> report
    # Setup and teardown: the collection check opens the run's work, and the removal of its temporary store
    # files closes it, also when any of the work failed (Airflow runs a teardown whatever its upstreams did,
    # and a teardown's own failure does not fail the run).
    cleanup = step_task("cleanup")(RUN)
    report >> cleanup.as_teardown(setups=schema)


ingest_knowledge_base()
