from __future__ import annotations

import pytest
from airflow.sdk import DAG

from genai_pipeline.config import Settings
from genai_pipeline.orchestration.step_task import MAP_INDEX_TEMPLATE, step_task


def operator_for(step: str, settings: Settings, payload=None):
    with DAG(dag_id=f"t_{step}", schedule=None):
        return step_task(step, settings=settings)(payload or {"batch": 0}).operator


def test_cluster_mode_runs_the_step_in_its_image(cluster_settings: Settings) -> None:
    embed = operator_for("embed", cluster_settings)
    load = operator_for("load", cluster_settings)
    assert embed.image == "registry.local/genai/embed:1.2.3"
    assert load.image == "registry.local/genai/control:1.2.3"
    assert embed.namespace == "pipeline-ns"
    assert embed.do_xcom_push is True  # the provider's default would drop the step's result
    assert embed.op_kwargs["step"] == "embed"


def test_cluster_pods_are_hardened(cluster_settings: Settings) -> None:
    op = operator_for("chunk", cluster_settings)
    pod, container = op.security_context, op.container_security_context
    assert pod.run_as_non_root and pod.run_as_user == 10001 and pod.run_as_group == 10001
    assert pod.seccomp_profile.type == "RuntimeDefault"
    assert container.read_only_root_filesystem is True
    assert container.allow_privilege_escalation is False
    assert container.capabilities.drop == ["ALL"]
    mounts = {m.mount_path: m.name for m in op.volume_mounts}
    assert mounts == {"/tmp": "tmp", "/data": "shared"}  # script written to /tmp; store on the shared claim
    claims = {v.name: v.persistent_volume_claim for v in op.volumes}
    assert claims["shared"].claim_name == "pipeline-data" and claims["tmp"] is None
    assert op.automount_service_account_token is False
    assert op.active_deadline_seconds == 3600


def test_cluster_pods_have_requests_and_limits_per_step(cluster_settings: Settings) -> None:
    embed = operator_for("embed", cluster_settings).container_resources
    chunk = operator_for("chunk", cluster_settings).container_resources
    assert embed.requests == {"cpu": "1", "memory": "1Gi"} and embed.limits == {"cpu": "2", "memory": "2Gi"}
    assert chunk.limits == {"cpu": "1", "memory": "1Gi"}


def test_secrets_come_from_a_secret_never_from_the_pod_spec(cluster_settings: Settings) -> None:
    op = operator_for("embed", cluster_settings)
    env = op.env_vars if isinstance(op.env_vars, dict) else {e.name: e.value for e in op.env_vars}
    assert env["PIPELINE_RUNTIME__MODE"] == "kubernetes"
    assert "PIPELINE_OPENAI__API_KEY" not in env
    assert all("sk-must-not-leak" not in (value or "") for value in env.values())
    (source,) = op.env_from
    assert source.secret_ref.name == "genai-pipeline-secrets"


def test_embedded_mode_runs_the_same_step_in_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    op = operator_for("embed", Settings())
    assert op.task_type == "_PythonDecoratedOperator"
    assert op.op_kwargs["step"] == "embed"
    assert not hasattr(op, "image")


@pytest.mark.parametrize("mode", ["embedded", "kubernetes"])
def test_retries_back_off_and_mapped_instances_are_labelled(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    monkeypatch.setenv("PIPELINE_RUNTIME__MODE", mode)
    monkeypatch.setenv("PIPELINE_STORE_URI", "s3://pipeline/store")
    monkeypatch.setenv("PIPELINE_RUNTIME__IMAGE_TAG", "3f2a9c0d1b7e")
    op = operator_for("load", Settings())
    assert op.retries == 3
    assert op.retry_exponential_backoff == 2.0
    assert op.max_retry_delay.total_seconds() == 300
    assert op.map_index_template == MAP_INDEX_TEMPLATE
    assert op.max_active_tis_per_dag == 4


def test_local_embedding_runs_one_batch_at_a_time_unless_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    assert operator_for("embed", Settings()).max_active_tis_per_dag == 1
    monkeypatch.setenv("PIPELINE_RUNTIME__CONCURRENCY", '{"embed": 8}')
    assert operator_for("embed", Settings()).max_active_tis_per_dag == 8


def test_unknown_steps_are_refused() -> None:
    with pytest.raises(KeyError, match="known steps"):
        step_task("summarise", settings=Settings())


SECRETS = {
    "PIPELINE_OPENAI__API_KEY": "sk-openai-must-not-leak",
    "PIPELINE_WEAVIATE__API_KEY": "wv-must-not-leak",
    "PIPELINE_MODEL_SERVER__API_KEY": "ms-must-not-leak",
    "PIPELINE_NOTIFY__WEBHOOK_URL": "https://hooks.example.com/services/T0/B0/url-token-must-not-leak",
    "PIPELINE_NOTIFY__WEBHOOK_TOKEN": "whk-must-not-leak",
    "PIPELINE_NOTIFY__SMTP_PASSWORD": "smtp-must-not-leak",
}


@pytest.mark.parametrize("step", ["chunk", "embed", "load", "submit_fine_tune", "generate_post"])
def test_a_failed_pod_as_the_provider_reports_it_names_no_secret(
    cluster_settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, step: str
) -> None:
    """A failed pod's spec lands in the task log and the lineage FAIL event.

    The provider raises "Pod … returned a failure … remote_pod: <the pod>" (log_pod_spec_on_failure's default).
    """
    from types import SimpleNamespace
    from unittest.mock import create_autospec

    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from genai_pipeline.orchestration.pods import explain_pod_failure

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    op = operator_for(step, Settings())
    assert op.log_pod_spec_on_failure  # the provider's default: the spec is printed
    hook = create_autospec(KubernetesHook, instance=True, is_in_cluster=True)  # no cluster here, only its answers
    hook.get_xcom_sidecar_container_image.return_value = hook.get_xcom_sidecar_container_resources.return_value = None
    op.__dict__["hook"] = hook
    remote_pod = op.build_pod_request_obj()
    failure = RuntimeError(f"Pod {remote_pod.metadata.name} returned a failure.\nremote_pod: {remote_pod}")
    ti = SimpleNamespace(task_id=step, map_index=0, try_number=1)
    with caplog.at_level("INFO"):
        explain_pod_failure({"exception": failure, "ti": ti})
    printed = f"{failure}\n{caplog.text}\n{op.env_vars}"
    assert "genai-pipeline-secrets" in printed  # the pod names the Secret it reads ...
    assert [name for name, value in SECRETS.items() if value in printed] == []  # ... never a value from it
