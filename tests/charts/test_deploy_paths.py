"""The three deploy paths, checked without a cluster.

helm lint and render over every values set, each object validated against the Kubernetes 1.34 OpenAPI schema,
policy on every pod, the dependency wiring, and every chart, path and value the kind, skaffold, Argo CD and Flux
files name.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.charts.rendering import CHART, MODEL_SERVER_ON, REPO, chart_values, helm, render, render_list

from genai_pipeline.local.k8s_schema import KUBERNETES_VERSION, kubernetes_schema

GITOPS = REPO / "k8s" / "gitops"
# Values sets of the umbrella chart, as each deploy path renders it (dependencies off: see rendering.py).
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "everything-on": {
        "sets": (
            *MODEL_SERVER_ON,
            "webPage.enabled=true",
            "nodePorts.webPage=30090",
            "images.tags.embed=5e1f",
        )
    },
    "kind": {"values": (REPO / "k8s/kind/values-kind.yaml",), "sets": ("images.tag=abc", "airflow.enabled=true")},
    "kubernetes-mode-e2e": {"values": (REPO / "k8s/e2e/values.yaml",), "sets": ("images.tag=abc",)},
    "gitops-dev": {"values": (GITOPS / "values-gitops.yaml", GITOPS / "envs/dev/values.yaml")},
    "gitops-prod": {"values": (GITOPS / "values-gitops.yaml", GITOPS / "envs/prod/values.yaml")},
    "flux-prod": {
        "values": (GITOPS / "values-gitops.yaml", GITOPS / "flux/values-flux.yaml", GITOPS / "envs/prod/values.yaml")
    },
}
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
# Names of values that are secrets (PIPELINE_OPENAI__API_KEY, PIPELINE_NOTIFY__WEBHOOK_TOKEN, ...).
SECRETISH = re.compile(r"(API_KEY|TOKEN|PASSWORD|SECRET_KEY)$", re.IGNORECASE)


def rendered(offline: Path, name: str) -> list[dict[str, Any]]:
    spec = VALUE_SETS[name]
    return render_list(offline, *spec.get("sets", ()), values=spec.get("values", ()), release="genai-pipeline")


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for d in docs:
        if d["kind"] in POD_KINDS:
            out.append((f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]))
        elif d["kind"] == "Pod":
            out.append((f"Pod/{d['metadata']['name']}", d["spec"]))
    return out


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_passes(offline: Path, name: str) -> None:
    spec = VALUE_SETS[name]
    args = [str(helm()), "lint", str(offline), "--strict", "--set", "airflow.enabled=false,weaviate.enabled=false"]
    for path in spec.get("values", ()):
        args += ["-f", str(path)]
    for item in spec.get("sets", ()):
        args += ["--set", item]
    result = subprocess.run(args, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_rendered_object_is_valid_kubernetes(offline: Path, name: str) -> None:
    schema = kubernetes_schema()
    problems = {
        f"{d['kind']}/{d['metadata']['name']}": errors for d in rendered(offline, name) if (errors := schema.errors(d))
    }
    assert not problems, f"invalid for Kubernetes {KUBERNETES_VERSION}: {json.dumps(problems, indent=1)}"


def test_the_schema_check_catches_what_the_api_server_would_refuse() -> None:
    """A typo'd field, a wrong type, an unknown kind: the offline check must fail each (strict, like the server)."""
    schema = kubernetes_schema()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}
    assert schema.errors(pod) == []
    assert schema.errors({**pod, "spec": {**pod["spec"], "restartPolicy": "Never", "restartPolice": "x"}})
    assert schema.errors({**pod, "spec": {"containers": [{"name": "c", "ports": [{"containerPort": "http"}]}]}})
    assert schema.errors({"apiVersion": "v1", "kind": "Deployment", "metadata": {"name": "d"}})


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_pod_is_restricted_sized_labelled_and_free_of_inline_secrets(offline: Path, name: str) -> None:
    docs = rendered(offline, name)
    for d in docs:
        labels = d["metadata"].get("labels", {})
        assert {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by"} <= set(labels)
    pods = pod_specs(docs)
    assert pods, "no pod rendered"
    for where, pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        for container in pod["containers"] + pod.get("initContainers", []):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert container["resources"]["requests"] and container["resources"]["limits"], where
            for env in container.get("env", []):
                assert not (SECRETISH.search(env["name"]) and "value" in env), f"{where}: {env['name']} inline"
    for d in docs:
        assert d["kind"] != "Secret", "the chart never carries a Secret: keys come from global.existingSecret"
        if d["kind"] == "ConfigMap":
            assert not [k for k in d["data"] if SECRETISH.search(k)], d["data"].keys()


def test_the_lock_pins_both_official_charts_and_nothing_of_theirs_is_committed() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    deps = {d["name"]: d for d in meta["dependencies"]}
    assert (
        deps["airflow"]["repository"] == "https://airflow.apache.org"
        and deps["airflow"]["condition"] == "airflow.enabled"
    )
    assert deps["weaviate"]["condition"] == "weaviate.enabled"
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", d["version"]) for d in deps.values()), "exact versions, no ranges"
    lock = yaml.safe_load((CHART / "Chart.lock").read_text())
    assert {(d["name"], d["version"]) for d in lock["dependencies"]} == {(n, d["version"]) for n, d in deps.items()}
    # helm checks the lock's digest against Chart.yaml before it fetches anything: here only the fetch can fail.
    result = subprocess.run([str(helm()), "dependency", "build", str(CHART)], capture_output=True, text=True)
    assert "out of sync" not in result.stderr, result.stderr
    tracked = subprocess.run(
        ["git", "ls-files", str(CHART / "charts")], capture_output=True, text=True, cwd=REPO, check=True
    ).stdout
    assert tracked == "", "third-party chart code is committed"


def test_the_dependencies_values_wire_airflow_and_weaviate_to_the_pipeline(offline: Path) -> None:
    values = chart_values()
    airflow, weaviate, secret = values["airflow"], values["weaviate"], values["global"]["existingSecret"]
    assert airflow["images"]["airflow"]["repository"] == f"{values['images']['registry']}/airflow"
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert airflow["images"]["airflow"]["tag"] == airflow["defaultAirflowTag"] == app_version  # like images.tag
    assert airflow["executor"] in ("LocalExecutor", "KubernetesExecutor") and airflow["triggerer"]["enabled"]
    assert airflow["config"]["core"]["dags_folder"] == "/opt/pipeline/dags"  # baked into the image
    # extraEnvFrom is a template the Airflow chart renders: it must name the ConfigMap this chart renders.
    env_from = airflow["extraEnvFrom"]
    assert "'{{ .Values.global.existingSecret }}'" in env_from
    settings_name = next(name for kind, name in render(offline, release="genai-pipeline") if kind == "ConfigMap")
    assert settings_name == "genai-pipeline-settings" and 'printf "%s-settings" .Release.Name' in env_from
    pod_context = airflow["securityContexts"]["pod"]
    assert pod_context["runAsNonRoot"] and pod_context["seccompProfile"]["type"] == "RuntimeDefault"
    # Weaviate: gRPC on, API keys only from the Secret, no anonymous access, no vectorizer, restricted, persistent.
    assert weaviate["grpcService"]["enabled"] and weaviate["authentication"]["anonymous_access"]["enabled"] is False
    assert weaviate["envSecrets"] == {"AUTHENTICATION_APIKEY_ALLOWED_KEYS": secret}
    assert weaviate["modules"]["default_vectorizer_module"] == "none"
    assert weaviate["initContainers"]["sysctlInitContainer"]["enabled"] is False
    assert weaviate["containerSecurityContext"]["readOnlyRootFilesystem"] and weaviate["storage"]["size"]
    # The Role is bound to the ServiceAccounts the Airflow chart makes for release "genai-pipeline".
    binding = render(offline, release="genai-pipeline")[("RoleBinding", "genai-pipeline-pod-launcher")]
    assert {s["name"] for s in binding["subjects"]} == {
        f"genai-pipeline-airflow-{c}" for c in ("scheduler", "worker", "worker-kubernetes", "triggerer")
    }


def test_helm_test_checks_the_install_as_the_launcher(offline: Path) -> None:
    pod = render(offline, release="genai-pipeline")[("Pod", "genai-pipeline-deploy-check")]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "genai-pipeline-airflow-scheduler" and spec["automountServiceAccountToken"]
    assert spec["containers"][0]["args"] == ["pipeline", "check-deploy"]
    assert spec["containers"][0]["image"] == "genai-pipeline/airflow:0.1.0"


def test_pull_secrets_scheduling_and_annotations_reach_the_charts_pods(offline: Path) -> None:
    docs = render(
        offline,
        *MODEL_SERVER_ON,
        "images.pullSecrets[0]=regcred",
        "nodeSelector.pool=cpu",
        "tolerations[0].key=dedicated",
        "tolerations[0].operator=Exists",
        "podAnnotations.team=ml",
        "stepServiceAccount.annotations.role=x",
        "fullnameOverride=gp",
    )
    pod = docs[("Deployment", "gp-model-server")]["spec"]["template"]
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}] and pod["spec"]["nodeSelector"] == {"pool": "cpu"}
    assert pod["spec"]["tolerations"][0]["key"] == "dedicated" and pod["metadata"]["annotations"]["team"] == "ml"
    assert docs[("ServiceAccount", "genai-pipeline-steps")]["metadata"]["annotations"] == {"role": "x"}


def test_the_kind_files_agree(offline: Path) -> None:
    cluster = yaml.safe_load((REPO / "k8s/kind/cluster.yaml").read_text())
    kind_values = yaml.safe_load((REPO / "k8s/kind/values-kind.yaml").read_text())
    mapped = {m["containerPort"] for n in cluster["nodes"] for m in n.get("extraPortMappings", [])}
    assert mapped == set(kind_values["nodePorts"].values())
    storage = {d["kind"]: d for d in yaml.safe_load_all((REPO / "k8s/kind/storage.yaml").read_text())}
    assert storage["StorageClass"]["metadata"]["name"] == kind_values["sharedStorage"]["storageClassName"]
    assert storage["PersistentVolume"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert kind_values["images"]["pullPolicy"] == "Never" and kind_values["airflow"].get("enabled", True)
    docs = render(offline, "images.tag=abc", "airflow.enabled=true", values=(REPO / "k8s/kind/values-kind.yaml",))
    ui = docs[("Service", "kb-genai-pipeline-airflow-ui")]["spec"]
    assert ui["type"] == "NodePort" and ui["ports"][0]["nodePort"] == 30080
    assert docs[("Service", "kb-genai-pipeline-web-page")]["spec"]["ports"][0]["nodePort"] == 30090
    makefile = (REPO / "Makefile").read_text()
    assert all(f"\n{target}:" in makefile for target in ("kind-up", "deploy", "kind-down"))
    assert "k8s/kind/cluster.yaml" in (REPO / "scripts/kind.sh").read_text()


def _argo_apps() -> list[dict[str, Any]]:
    out = subprocess.run(
        [
            str(helm()),
            "template",
            "root",
            str(GITOPS / "argocd/apps"),
            "-n",
            "argocd",
            "--set",
            "repoURL=https://g/r.git",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _values_keys_exist(dotted: str) -> bool:
    node: Any = chart_values()
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_argo_cd_app_of_apps_syncs_in_waves_from_one_repository_parameter() -> None:
    root = yaml.safe_load((GITOPS / "argocd/root.yaml").read_text())
    params = {p["name"]: p["value"] for p in root["spec"]["source"]["helm"]["parameters"]}
    assert params["repoURL"] == "$ARGOCD_APP_SOURCE_REPO_URL"  # the URL is written once, in root.yaml
    assert (REPO / root["spec"]["source"]["path"]).is_dir()
    apps = _argo_apps()
    waves = [(int(a["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]), a["metadata"]["name"]) for a in apps]
    assert [name for _, name in sorted(waves)] == [
        "genai-platform",
        "genai-weaviate",
        "genai-airflow",
        "genai-pipeline",
    ]
    for app in apps:
        source = app["spec"]["source"]
        assert source["repoURL"] == "https://g/r.git" and (REPO / source["path"]).is_dir()
        assert "CreateNamespace=true" in app["spec"]["syncPolicy"]["syncOptions"]
        for values_file in source.get("helm", {}).get("valueFiles", []):
            assert (REPO / source["path"] / values_file).resolve().is_file(), values_file
        for param in source.get("helm", {}).get("parameters", []):
            assert _values_keys_exist(param["name"]), param["name"]
    parts = {
        a["metadata"]["name"]: {
            p["name"]: p["value"] for p in a["spec"]["source"].get("helm", {}).get("parameters", [])
        }
        for a in apps
    }
    assert (
        parts["genai-weaviate"]["weaviate.enabled"] == "true" and parts["genai-weaviate"]["airflow.enabled"] == "false"
    )
    assert parts["genai-airflow"]["pipelineComponents.settings"] == "true"
    assert parts["genai-pipeline"]["pipelineComponents.enabled"] == "true"


def test_flux_releases_depend_on_each_other_in_order_and_name_real_files() -> None:
    platform = list(yaml.safe_load_all((GITOPS / "flux/platform.yaml").read_text()))
    assert all((REPO / k["spec"]["path"]).is_dir() for k in platform)
    releases = {
        d["metadata"]["name"]: d for d in yaml.safe_load_all((GITOPS / "flux/helmreleases/releases.yaml").read_text())
    }
    assert releases["genai-airflow"]["spec"]["dependsOn"] == [{"name": "genai-weaviate"}]
    assert releases["genai-pipeline"]["spec"]["dependsOn"] == [{"name": "genai-airflow"}]
    source = yaml.safe_load((GITOPS / "flux/source.yaml").read_text())
    for release in releases.values():
        spec = release["spec"]["chart"]["spec"]
        assert spec["sourceRef"]["name"] == source["metadata"]["name"] and (REPO / spec["chart"]).is_dir()
        for env in ("dev", "prod"):
            for values_file in spec["valuesFiles"]:
                assert (REPO / values_file.replace("${ENVIRONMENT}", env)).is_file(), values_file
        assert release["spec"]["releaseName"] == release["metadata"]["name"]
    flux_values = yaml.safe_load((GITOPS / "flux/values-flux.yaml").read_text())
    # Airflow is release genai-airflow here: the Role must bind the ServiceAccounts that release makes.
    assert {s["name"] for s in flux_values["rbac"]["subjects"]} == {
        f"genai-airflow-{c}" for c in ("scheduler", "worker", "worker-kubernetes", "triggerer")
    }


def test_skaffold_builds_what_the_chart_deploys_and_names_real_paths(offline: Path) -> None:
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    artifacts = {a["image"].split("/", 1)[1]: a for a in config["build"]["artifacts"]}
    for name, artifact in artifacts.items():
        assert (REPO / "images" / name / "Dockerfile").is_file(), name
        assert (REPO / artifact["custom"]["buildCommand"].split()[-1]).is_file()
        for path in artifact["custom"]["dependencies"]["paths"]:
            assert list(REPO.glob(path)), path
    release = config["deploy"]["helm"]["releases"][0]
    assert (REPO / release["chartPath"]).resolve() == CHART
    templates = release["setValueTemplates"]
    # Every step image's built tag reaches its pods (images.tags.<image>), Airflow's reaches the dependency.
    assert {k.removeprefix("images.tags.") for k in templates if k.startswith("images.tags.")} == set(artifacts) - {
        "airflow"
    }
    assert all(
        templates[f"images.tags.{n}"] == f"{{{{.IMAGE_TAG_genai_pipeline_{n.replace('-', '_')}}}}}"
        for n in artifacts
        if n != "airflow"
    )
    assert _values_keys_exist("airflow.images.airflow.tag")
    profiles = {p["name"]: p for p in config["profiles"]}
    assert {a["kubeContext"] for p in profiles.values() for a in p["activation"]} == {
        "kind-genai-pipeline",
        "genai-pipeline",
    }
    kind_files = next(op["value"] for op in profiles["kind"]["patches"] if op["path"].endswith("valuesFiles"))
    assert all((REPO / f).is_file() for f in kind_files)
    local = {op["path"]: op["value"] for op in profiles["local-node"]["patches"]}
    assert all((REPO / f).is_file() for f in local["/deploy/helm/releases/0"]["valuesFiles"])
    assert (REPO / local["/manifests/kustomize"]["paths"][0] / "kustomization.yaml").is_file()
    assert all((REPO / f).is_file() for f in config["manifests"]["rawYaml"])
    hook = " ".join(local["/deploy/helm/hooks"]["before"][0]["host"]["command"])
    assert "scripts/cluster/prepare.sh" in hook and (REPO / "scripts/cluster/prepare.sh").is_file()
    # The port-forwarded web page is the Service the chart renders for release genai-pipeline.
    forwarded = {f["resourceName"] for f in config["portForward"]}
    assert "genai-pipeline-web-page" in forwarded
    assert ("Service", "genai-pipeline-web-page") in render(offline, "webPage.enabled=true", release="genai-pipeline")


def test_the_chart_readme_and_the_values_schema_are_generated_from_current_sources() -> None:
    from genai_pipeline.chart_schema import main as check_schema
    from genai_pipeline.local.chart_docs import render as readme

    assert (CHART / "README.md").read_text() == readme(), "stale chart README: make chart-docs"
    assert check_schema(["--check"]) == 0, "stale values schema: make chart-docs"


def test_no_secret_setting_can_be_a_chart_value() -> None:
    """Optional secrets (a key, the webhook URL, the SMTP password) were in the schema: values could hold them."""
    import json

    from pydantic import SecretStr

    from genai_pipeline.config import Settings

    pipeline = json.loads((CHART / "values.schema.json").read_text())["properties"]["pipeline"]["properties"]
    secrets = {
        (section, key)
        for section, field in Settings.model_fields.items()
        for key, inner in getattr(field.annotation, "model_fields", {}).items()
        if SecretStr in getattr(inner.annotation, "__args__", (inner.annotation,))
    }
    assert {("openai", "api_key"), ("notify", "webhook_url"), ("notify", "smtp_password")} <= secrets
    assert not [(s, k) for s, k in secrets if k in pipeline[s]["properties"]]


def test_the_schema_is_that_of_the_kubernetes_the_cluster_scripts_build() -> None:
    script = (REPO / "scripts" / "cluster" / "build-k8s.sh").read_text()
    assert f'K8S_VERSION="${{K8S_VERSION:-{KUBERNETES_VERSION}}}"' in script
