"""The chart's model server listens on every interface: it demands a key, and every client sends that key."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from tests.charts.rendering import MODEL_SERVER_ON, REPO, chart_values, render

from genai_pipeline.config import Settings
from genai_pipeline.orchestration.pods import pod_options

HOSTED = "pipeline.openai.base_url=https://api.openai.com/v1"


def _refusal(offline: Path, *sets: str) -> str:
    with pytest.raises(subprocess.CalledProcessError) as error:
        render(offline, *sets)
    return error.value.stderr


def test_the_model_server_does_not_render_without_a_key(offline: Path) -> None:
    message = _refusal(offline, "modelServer.enabled=true")
    assert "modelServer.apiKeySecretKey is required" in message and "genai-pipeline-secrets" in message


@pytest.mark.parametrize(
    ("sets", "says"),
    [
        # Clients use the model server and send PIPELINE_OPENAI__API_KEY: the server must demand that entry.
        (("modelServer.apiKeySecretKey=MODEL_KEY",), "with no pipeline.openai.base_url the clients use the model"),
        # A hosted API's key is PIPELINE_OPENAI__API_KEY: the model server must not be handed it.
        (("modelServer.apiKeySecretKey=PIPELINE_OPENAI__API_KEY", HOSTED), "give the model server an entry of its own"),
    ],
)
def test_the_key_the_server_demands_is_the_one_its_clients_send(
    offline: Path, sets: tuple[str, ...], says: str
) -> None:
    assert says in _refusal(offline, "modelServer.enabled=true", *sets)


def test_with_a_hosted_api_the_model_server_keeps_a_key_of_its_own(offline: Path) -> None:
    docs = render(offline, "modelServer.enabled=true", "modelServer.apiKeySecretKey=MODEL_SERVER_KEY", HOSTED)
    (container,) = docs[("Deployment", "kb-genai-pipeline-model-server")]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["PIPELINE_MODEL_SERVER__API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "MODEL_SERVER_KEY"


def test_the_server_and_every_client_read_the_same_secret_entry(offline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(offline, *MODEL_SERVER_ON, "webPage.enabled=true", "helmTest.enabled=true")
    server = docs[("Deployment", "kb-genai-pipeline-model-server")]["spec"]["template"]["spec"]["containers"][0]
    (key_env,) = [e for e in server["env"] if e["name"] == "PIPELINE_MODEL_SERVER__API_KEY"]
    assert "value" not in key_env  # never a literal
    ref = key_env["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "genai-pipeline-secrets", "key": "PIPELINE_OPENAI__API_KEY"} and not ref.get("optional")
    # The entry's name is the variable the clients' settings read (openai.api_key), from the same Secret:
    # the web page and the helm test by envFrom,
    for kind, name in (("Deployment", "kb-genai-pipeline-web-page"), ("Pod", "kb-genai-pipeline-deploy-check")):
        spec = docs[(kind, name)]["spec"]
        containers = spec["template"]["spec"]["containers"] if kind == "Deployment" else spec["containers"]
        assert {"name": ref["name"], "optional": True} in [e.get("secretRef") for e in containers[0]["envFrom"]]
    # step pods through the Secret the settings ConfigMap names,
    for key, value in docs[("ConfigMap", "kb-settings")]["data"].items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.openai_base_url == "http://kb-genai-pipeline-model-server:8088/v1"
    (env_from,) = pod_options(settings, "generate_post", "generate")["env_from"]
    assert env_from.secret_ref.name == ref["name"]
    # and Airflow through the extraEnvFrom the official chart renders (global.existingSecret).
    assert "secretRef:\n    name: '{{ .Values.global.existingSecret }}'" in chart_values()["airflow"]["extraEnvFrom"]
    assert chart_values()["global"]["existingSecret"] == ref["name"]


@pytest.mark.parametrize(
    ("values", "maker"),
    [("k8s/kind/values-kind.yaml", "scripts/kind.sh"), ("k8s/gitops/envs/dev/values.yaml", "docs/deploy.md")],
)
def test_every_values_set_that_runs_the_model_server_names_an_entry_its_secret_gets(values: str, maker: str) -> None:
    """The values name the entry, and what makes the Secret on that path (a script, the deploy guide) creates it."""
    created = set(re.findall(r"--from-literal=(\w+)=", (REPO / maker).read_text()))
    server = yaml.safe_load((REPO / values).read_text())["modelServer"]
    assert server["enabled"] and server["apiKeySecretKey"] in created
