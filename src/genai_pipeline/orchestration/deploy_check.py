"""The `helm test` of a deployed release: whether this install can run the pipeline.

Runs in the Airflow image, as the ServiceAccount Airflow launches step pods with, with the release's settings
and Secret as environment. Each check prints one line (ok or FAILED with the reason); all of them run:

- ``weaviate``: Weaviate answers ready, and the knowledge-base collection exists. A fresh install has none
  yet, so the check makes it exactly as the ingest DAG's first task does (the same idempotent step).
- ``step-pod``: the pod a step would run (built by the provider from the pipeline's own pod options: image,
  ServiceAccount, security context, shared claim, XCom sidecar) is created with a server-side dry run, so the
  Role, the namespace's Pod Security admission and quotas all have their say, and nothing runs.
"""

from __future__ import annotations

from collections.abc import Callable

from genai_pipeline.config import Settings, get_settings

# The step whose pod this check asks admission about (a dry run: no image is pulled).
PROBE_STEP = "chunk"


def check_weaviate(settings: Settings) -> str:
    """Ready, and the collection there (created from the schema in code when missing).

    ``create_schema`` connects through the knowledge base's client factory, which retries and then raises
    ``WeaviateUnavailable`` naming the host: a connection of its own here would only wait twice for an unready
    server.
    """
    from genai_pipeline.clients.context import service_context
    from genai_pipeline.steps.contracts import Empty
    from genai_pipeline.steps.ingest import create_schema

    result = create_schema(service_context(settings), Empty())
    where = f"{settings.weaviate.host}:{settings.weaviate.http_port}"
    return f"Weaviate {where} ready; collection {result.collection} {'created' if result.created else 'exists'}"


def check_step_pod(settings: Settings) -> str:
    """The launcher may create a step pod in the pipeline namespace, and admission accepts it (dry run)."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    from genai_pipeline.orchestration.pods import pod_options

    operator = KubernetesPodOperator(
        task_id="deploy_check", cmds=["true"], **pod_options(settings, PROBE_STEP, PROBE_STEP)
    )
    pod = operator.build_pod_request_obj()
    namespace = settings.runtime.namespace
    created = operator.hook.core_v1_client.create_namespaced_pod(namespace, pod, dry_run="All")
    images = ", ".join(c.image for c in created.spec.containers)
    return f"a {PROBE_STEP} step pod ({images}) may be created in {namespace} as {created.spec.service_account_name}"


CHECKS: dict[str, Callable[[Settings], str]] = {"weaviate": check_weaviate, "step-pod": check_step_pod}


def run_checks(settings: Settings | None = None) -> bool:
    """Run every check, print one line each; True when all passed."""
    settings = settings or get_settings()
    passed = True
    for name, check in CHECKS.items():
        try:
            print(f"ok      {name}: {check(settings)}", flush=True)
        except Exception as error:  # every failure is reported, and the other checks still run
            passed = False
            print(f"FAILED  {name}: {type(error).__name__}: {error}", flush=True)
    return passed
