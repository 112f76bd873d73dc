from __future__ import annotations

import json

import pytest
from airflow.sdk import DAG

from genai_pipeline.config import Settings
from genai_pipeline.orchestration.pods import classify_pod_failure, kubernetes_connection
from genai_pipeline.orchestration.step_task import step_task


def test_the_xcom_sidecar_passes_the_restricted_pod_security_level(cluster_settings: Settings) -> None:
    """The provider adds the sidecar with no securityContext; a restricted namespace then refuses every pod."""
    from airflow.providers.cncf.kubernetes.utils.xcom_sidecar import add_xcom_sidecar
    from kubernetes.client import models as k8s

    with DAG(dag_id="t", schedule=None):
        op = step_task("embed", settings=cluster_settings)({"batch": 0}).operator
    pod = add_xcom_sidecar(
        k8s.V1Pod(spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="base")])),
        sidecar_container_security_context=op.xcom_sidecar_container_security_context,
    )
    sidecar = pod.spec.containers[-1].security_context
    assert sidecar.allow_privilege_escalation is False
    assert sidecar.capabilities.drop == ["ALL"]
    assert sidecar.run_as_non_root is True and sidecar.read_only_root_filesystem is True


def test_the_connection_names_the_local_sidecar_image_and_runs_in_cluster(cluster_settings: Settings) -> None:
    conn = kubernetes_connection(cluster_settings)
    extra = json.loads(conn["extra"])
    assert conn["conn_type"] == "kubernetes"
    assert extra["in_cluster"] is True and extra["namespace"] == "pipeline-ns"
    assert extra["xcom_sidecar_container_image"] == "registry.local/genai/xcom-sidecar:1.2.3"
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from airflow.sdk import Connection

    hook = KubernetesHook()
    hook.__dict__["conn_extras"] = Connection(conn_id="k", conn_type="kubernetes", extra=conn["extra"]).extra_dejson
    resources = hook.get_xcom_sidecar_container_resources()  # what the provider reads, the way it reads it
    assert resources["requests"] and resources["limits"]
    assert hook.get_xcom_sidecar_container_image() == "registry.local/genai/xcom-sidecar:1.2.3"


def test_kubernetes_mode_refuses_to_guess_an_image_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_RUNTIME__MODE", "kubernetes")
    monkeypatch.setenv("PIPELINE_STORE_URI", "/data/store")
    with pytest.raises(ValueError, match="PIPELINE_RUNTIME__IMAGE_TAG must name the tag"):
        Settings()


@pytest.mark.parametrize(
    ("message", "kind", "why"),
    [
        (
            "Pod genai-embed-x returned a failure.\nremote_pod: {'deletion_timestamp': datetime.datetime(2026)}",
            "infrastructure",
            "deleted while the step ran",
        ),
        ("PodNotFoundException: Pod genai-embed-x not found", "infrastructure", "disappeared"),
        ("Pod returned a failure.\n{'phase': 'Failed', 'reason': 'Evicted'}", "infrastructure", "evicted"),
        ("Pod returned a failure.\n{'reason': 'OOMKilled', 'exit_code': 137}", "infrastructure", "memory limit"),
        ("Pod launching failed: Pod took too long to start", "infrastructure", "never started"),
        ("Pod returned a failure.\nwaiting: {'reason': 'ErrImagePull'}", "infrastructure", "could not be pulled"),
        (
            "Pod genai-embed-x returned a failure.\nremote_pod: {'phase': 'Pending', 'deletion_timestamp': None}",
            "infrastructure",
            "went away before the step container finished",
        ),
        (
            "Pod genai-embed-x returned a failure.\n{'terminated': {'exit_code': 143, 'reason': 'Error'}}",
            "infrastructure",
            "killed from outside",
        ),
        (
            "Pod genai-load-x returned a failure.\n{'terminated': {'exit_code': 1, 'reason': 'Error'}}",
            "step",
            "step's code failed",
        ),
        ("ValueError: collection KnowledgeBase not found", "step", "step's code failed"),
    ],
)
def test_pod_failures_are_told_apart_from_step_errors(message: str, kind: str, why: str) -> None:
    got_kind, got_why = classify_pod_failure(RuntimeError(message))
    assert got_kind == kind and why in got_why


def test_an_image_built_with_its_own_tag_is_the_one_its_pods_ask_for() -> None:
    runtime = Settings(runtime={"image_tag": "0.1.0", "image_tags": {"embed": "5e1f"}}).runtime
    assert runtime.image_for("embed") == "genai-pipeline/embed:5e1f"
    assert runtime.image_for("chunk") == "genai-pipeline/chunk:0.1.0"
