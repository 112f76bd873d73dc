"""The project chart rendered by real helm, then queried: settings, RBAC, hardening, the model server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from genai_pipeline.config import RunMode, Settings
from genai_pipeline.local.go_tools import ensure_helm

CHART = Path(__file__).resolve().parents[2] / "charts" / "genai-pipeline"


@pytest.fixture(scope="module")
def helm() -> Path:
    return ensure_helm(Settings().cache_dir)


def render(helm: Path, *sets: str) -> dict[tuple[str, str], dict]:
    args = [str(helm), "template", "kb", str(CHART), "--namespace", "genai-pipeline", "--kube-version", "1.34.0"]
    for item in sets:
        args += ["--set", item]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}


def test_chart_lints(helm: Path) -> None:
    result = subprocess.run([str(helm), "lint", str(CHART)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_settings_configmap_is_read_by_the_settings_model(helm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(helm, "pipeline.chunking.size_tokens=256", "images.registry=registry.local/genai")
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
    assert settings.weaviate.grpc_port == 50051
    assert settings.store == "/data/store" and settings.runtime.shared_volume_claim == "genai-pipeline-data"
    assert "PIPELINE_OPENAI__BASE_URL" not in data  # no model server, no hosted URL: nothing invented


def test_rbac_is_namespaced_and_minimal(helm: Path) -> None:
    docs = render(helm)
    assert not any(kind.startswith("Cluster") for kind, _ in docs)
    rules = {tuple(r["resources"]): set(r["verbs"]) for r in docs[("Role", "kb-pod-launcher")]["rules"]}
    assert rules == {
        ("pods",): {"create", "get", "list", "watch", "patch", "delete"},
        ("pods/log",): {"get"},
        ("pods/exec",): {"create", "get"},
        ("events",): {"list", "watch"},
    }
    subjects = docs[("RoleBinding", "kb-pod-launcher")]["subjects"]
    # LocalExecutor runs tasks in the scheduler, KubernetesExecutor in workers, deferred pods in the triggerer.
    assert {(s["name"], s["namespace"]) for s in subjects} == {
        ("airflow-scheduler", "genai-pipeline"),
        ("airflow-worker", "genai-pipeline"),
        ("airflow-triggerer", "genai-pipeline"),
    }
    custom = render(helm, "rbac.subjects[0].name=genai-airflow", "rbac.subjects[0].namespace=ops")
    assert custom[("RoleBinding", "kb-pod-launcher")]["subjects"] == [
        {"kind": "ServiceAccount", "name": "genai-airflow", "namespace": "ops"}
    ]
    assert docs[("ServiceAccount", "genai-pipeline-steps")]["automountServiceAccountToken"] is False


def test_the_shared_claim_the_step_pods_mount_is_created(helm: Path) -> None:
    docs = render(helm, "sharedStorage.storageClassName=nfs", "sharedStorage.size=50Gi")
    claim = docs[("PersistentVolumeClaim", "genai-pipeline-data")]["spec"]
    assert claim["accessModes"] == ["ReadWriteMany"] and claim["storageClassName"] == "nfs"
    assert claim["resources"]["requests"]["storage"] == "50Gi"
    assert ("PersistentVolumeClaim", "genai-pipeline-data") not in render(helm, "sharedStorage.create=false")


def test_a_built_tag_reaches_the_step_pods_settings(helm: Path) -> None:
    data = render(helm, "images.tag=3f2a9c0d1b7e")[("ConfigMap", "kb-settings")]["data"]
    assert data["PIPELINE_RUNTIME__IMAGE_TAG"] == "3f2a9c0d1b7e"
    assert data["PIPELINE_RUNTIME__XCOM_SIDECAR_IMAGE"] == "genai-pipeline/xcom-sidecar:3f2a9c0d1b7e"


def test_model_server_is_optional(helm: Path) -> None:
    assert not any(kind == "Deployment" for kind, _ in render(helm))


def test_model_server_deployment_is_hardened_and_wired(helm: Path) -> None:
    docs = render(helm, "modelServer.enabled=true", "modelServer.existingClaim=models")
    pod = docs[("Deployment", "kb-model-server")]["spec"]["template"]["spec"]
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
    assert not any("KEY" in e["name"] for e in container["env"])  # keys only from the Secret
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == "models"
    service = docs[("Service", "kb-model-server")]["spec"]
    assert service["type"] == "ClusterIP" and service["ports"][0]["port"] == 8088
    data = docs[("ConfigMap", "kb-settings")]["data"]
    assert data["PIPELINE_OPENAI__BASE_URL"] == "http://kb-model-server:8088/v1"


@pytest.mark.parametrize(
    "bad", ["unknownKey=1", "modelServer.replicas=2", "images.pullPolicy=Sometimes", "pipeline.extra.x=1"]
)
def test_schema_rejects_values_it_does_not_know(helm: Path, bad: str) -> None:
    with pytest.raises(subprocess.CalledProcessError) as error:
        render(helm, bad)
    assert "values don't meet the specifications of the schema" in error.value.stderr


def test_the_schema_knows_every_settings_section() -> None:
    """The chart's pipeline values are the settings model: a section the model gains must be settable."""
    from genai_pipeline.config import Settings

    schema = json.loads((CHART / "values.schema.json").read_text())
    sections = {name for name, field in Settings.model_fields.items() if hasattr(field.annotation, "model_fields")}
    assert set(schema["properties"]["pipeline"]["properties"]) == sections


def test_the_web_page_is_optional_hardened_and_reads_the_shared_store(helm: Path) -> None:
    assert not any(kind == "Deployment" and "web-page" in name for kind, name in render(helm))
    docs = render(helm, "webPage.enabled=true", "images.tag=x")
    pod = docs[("Deployment", "kb-web-page")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].endswith("/generate:x") and container["command"][:3] == [
        "python",
        "-m",
        "genai_pipeline.web.app",
    ]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True and container["resources"]["limits"]
    assert {"name": "shared", "mountPath": "/data", "readOnly": True} in container["volumeMounts"]
    assert docs[("Service", "kb-web-page")]["spec"]["ports"][0]["port"] == 8090
