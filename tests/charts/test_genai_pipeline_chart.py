"""The project's own templates rendered by real helm, then queried: settings, RBAC, hardening, the model server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tests.charts.rendering import CHART, MODEL_SERVER_ON, render

from genai_pipeline.config import RunMode, Settings


def test_settings_configmap_is_read_by_the_settings_model(offline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # weaviate.enabled: the settings name the Weaviate dependency's Services (its templates are not rendered here).
    docs = render(
        offline, "pipeline.chunking.size_tokens=256", "images.registry=registry.local/genai", "weaviate.enabled=true"
    )
    data = docs[("ConfigMap", "kb-settings")]["data"]
    assert all(key.startswith("PIPELINE_") for key in data)
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # validation errors would fail here
    assert settings.runtime.mode is RunMode.KUBERNETES
    assert settings.chunking.size_tokens == 256
    assert settings.runtime.image_for("embed") == "registry.local/genai/embed:0.1.0"  # the release's appVersion
    assert settings.runtime.namespace == "genai-pipeline"  # step pods run in the release's namespace
    assert settings.runtime.xcom_sidecar_image == "registry.local/genai/xcom-sidecar:0.1.0"
    assert (settings.weaviate.host, settings.weaviate.http_port) == ("weaviate.genai-pipeline.svc", 80)
    assert (settings.weaviate.grpc_host, settings.weaviate.grpc_port) == ("weaviate-grpc.genai-pipeline.svc", 50051)
    assert settings.runtime.secret_name == "genai-pipeline-secrets"  # global.existingSecret
    assert settings.store == "/data/store" and settings.runtime.shared_volume_claim == "genai-pipeline-data"
    assert "PIPELINE_OPENAI__BASE_URL" not in data  # no model server, no hosted URL: nothing invented


def test_rbac_is_namespaced_and_minimal(offline: Path) -> None:
    docs = render(offline)
    assert not any(kind.startswith("Cluster") for kind, _ in docs)
    rules = {tuple(r["resources"]): set(r["verbs"]) for r in docs[("Role", "kb-genai-pipeline-pod-launcher")]["rules"]}
    assert rules == {
        ("pods",): {"create", "get", "list", "watch", "patch", "delete"},
        ("pods/log",): {"get"},
        ("pods/exec",): {"create", "get"},
        ("events",): {"list", "watch"},
    }
    subjects = docs[("RoleBinding", "kb-genai-pipeline-pod-launcher")]["subjects"]
    # LocalExecutor runs tasks in the scheduler, KubernetesExecutor in workers, deferred pods in the triggerer.
    assert {(s["name"], s["namespace"]) for s in subjects} == {
        ("kb-airflow-scheduler", "genai-pipeline"),
        ("kb-airflow-worker", "genai-pipeline"),
        ("kb-airflow-worker-kubernetes", "genai-pipeline"),
        ("kb-airflow-triggerer", "genai-pipeline"),
    }
    custom = render(offline, "rbac.subjects[0].name=genai-airflow", "rbac.subjects[0].namespace=ops")
    assert custom[("RoleBinding", "kb-genai-pipeline-pod-launcher")]["subjects"] == [
        {"kind": "ServiceAccount", "name": "genai-airflow", "namespace": "ops"}
    ]
    assert docs[("ServiceAccount", "genai-pipeline-steps")]["automountServiceAccountToken"] is False


def test_the_shared_claim_the_step_pods_mount_is_created(offline: Path) -> None:
    docs = render(offline, "sharedStorage.storageClassName=nfs", "sharedStorage.size=50Gi")
    claim = docs[("PersistentVolumeClaim", "genai-pipeline-data")]["spec"]
    assert claim["accessModes"] == ["ReadWriteMany"] and claim["storageClassName"] == "nfs"
    assert claim["resources"]["requests"]["storage"] == "50Gi"
    assert ("PersistentVolumeClaim", "genai-pipeline-data") not in render(offline, "sharedStorage.create=false")


def test_a_built_tag_reaches_the_step_pods_settings(offline: Path) -> None:
    data = render(offline, "images.tag=3f2a9c0d1b7e")[("ConfigMap", "kb-settings")]["data"]
    assert data["PIPELINE_RUNTIME__IMAGE_TAG"] == "3f2a9c0d1b7e"
    assert data["PIPELINE_RUNTIME__XCOM_SIDECAR_IMAGE"] == "genai-pipeline/xcom-sidecar:3f2a9c0d1b7e"


def test_model_server_is_optional(offline: Path) -> None:
    assert not any(kind == "Deployment" for kind, _ in render(offline))


def test_model_server_deployment_is_hardened_and_wired(offline: Path) -> None:
    docs = render(offline, *MODEL_SERVER_ON, "modelServer.existingClaim=models")
    pod = docs[("Deployment", "kb-genai-pipeline-model-server")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "genai-pipeline/model-server:0.1.0"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert {"name": "genai-pipeline-secrets", "optional": True} in [e.get("secretRef") for e in container["envFrom"]]
    assert not any("KEY" in e["name"] and "value" in e for e in container["env"])  # keys only from the Secret
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    # State and the chat model's one-time conversion live on the volume, so a new pod reuses both.
    assert mounts["/data"] == "state"
    assert env["PIPELINE_MODEL_SERVER__STATE_DIR"].startswith("/data/")
    assert env["PIPELINE_CACHE_DIR"].startswith("/data/")
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == "models"
    service = docs[("Service", "kb-genai-pipeline-model-server")]["spec"]
    assert service["type"] == "ClusterIP" and service["ports"][0]["port"] == 8088
    data = docs[("ConfigMap", "kb-settings")]["data"]
    assert data["PIPELINE_OPENAI__BASE_URL"] == "http://kb-genai-pipeline-model-server:8088/v1"


@pytest.mark.parametrize(
    "bad", ["unknownKey=1", "modelServer.replicas=2", "images.pullPolicy=Sometimes", "pipeline.extra.x=1"]
)
def test_schema_rejects_values_it_does_not_know(offline: Path, bad: str) -> None:
    with pytest.raises(subprocess.CalledProcessError) as error:
        render(offline, bad)
    assert "values don't meet the specifications of the schema" in error.value.stderr


def test_the_schema_knows_every_settings_section() -> None:
    """The chart's pipeline values are the settings model: a section the model gains must be settable."""
    from genai_pipeline.config import Settings

    schema = json.loads((CHART / "values.schema.json").read_text())
    sections = {name for name, field in Settings.model_fields.items() if hasattr(field.annotation, "model_fields")}
    assert set(schema["properties"]["pipeline"]["properties"]) == sections


def test_the_web_page_is_optional_hardened_and_reads_the_shared_store(offline: Path) -> None:
    assert not any(kind == "Deployment" and "web-page" in name for kind, name in render(offline))
    docs = render(offline, "webPage.enabled=true", "images.tag=x")
    pod = docs[("Deployment", "kb-genai-pipeline-web-page")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].endswith("/generate:x") and container["command"][:3] == [
        "python",
        "-m",
        "genai_pipeline.web.app",
    ]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True and container["resources"]["limits"]
    assert {"name": "shared", "mountPath": "/data", "readOnly": True} in container["volumeMounts"]
    assert docs[("Service", "kb-genai-pipeline-web-page")]["spec"]["ports"][0]["port"] == 8090


def test_the_web_page_answers_its_service_names_a_port_forward_and_the_hosts_given(offline: Path) -> None:
    """Any other Host is refused (DNS rebinding); the pod gets the list its Service is reached by."""
    docs = render(offline, "webPage.enabled=true", "pipeline.web_page.allowed_hosts={posts.example.com}")
    (container,) = docs[("Deployment", "kb-genai-pipeline-web-page")]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    service = "kb-genai-pipeline-web-page"
    assert json.loads(env["PIPELINE_WEB_PAGE__ALLOWED_HOSTS"]) == [
        "localhost",
        "127.0.0.1",
        service,
        f"{service}.genai-pipeline",
        f"{service}.genai-pipeline.svc",
        f"{service}.genai-pipeline.svc.cluster.local",
        "posts.example.com",
    ]


def test_every_airflow_deployment_registers_the_same_lineage_extractor() -> None:
    """The chart's Airflow config, the CI cluster's and the local stack's name one extractor, which imports."""
    import configparser

    import yaml

    from genai_pipeline.local.airflow_env import LINEAGE_EXTRACTOR, openlineage_env
    from genai_pipeline.orchestration.lineage import StepLineageExtractor

    values = yaml.safe_load((CHART / "values.yaml").read_text())["airflow"]["config"]["openlineage"]
    e2e = next(
        d
        for d in yaml.safe_load_all((CHART.parents[1] / "k8s/e2e/airflow.yaml").read_text())
        if d["kind"] == "ConfigMap"
    )
    e2e_config = configparser.ConfigParser(interpolation=None)
    e2e_config.read_string(e2e["data"]["airflow.cfg"])
    assert values["extractors"] == e2e_config["openlineage"]["extractors"] == LINEAGE_EXTRACTOR
    assert openlineage_env(Settings())["AIRFLOW__OPENLINEAGE__EXTRACTORS"] == LINEAGE_EXTRACTOR
    module, _, name = LINEAGE_EXTRACTOR.rpartition(".")
    assert getattr(__import__(module, fromlist=[name]), name) is StepLineageExtractor
    assert json.loads(values["transport"]) == {"type": "console"}  # no backend address or key in values
