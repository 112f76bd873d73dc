"""What users deploy, against the official Airflow chart's interface (official_airflow_chart.yaml).

The official chart cannot be fetched here, so its facts are data: these tests hold our values, NOTES.txt, skaffold,
the RBAC subjects, the documented key commands and the e2e manifests to them. The image itself runs the recorded
commands in tests/e2e/test_airflow_image_contract.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet
from tests.charts.official_airflow_contract import (
    api_server,
    contract,
    fill,
    launcher_accounts,
    probe,
    secret_env,
    service_accounts,
)
from tests.charts.rendering import REPO, helm, merged_values, render
from tests.charts.test_deploy_paths import VALUE_SETS

E2E_RELEASE = "genai-airflow"  # the official chart's release the e2e manifests stand in for
# The Airflow release of each values set: Flux installs Airflow as a release of its own.
AIRFLOW_RELEASE = {name: "genai-pipeline" for name in VALUE_SETS} | {
    "flux-prod": "genai-airflow",
    "kubernetes-mode-e2e": E2E_RELEASE,
}


def values_of(name: str) -> dict[str, Any]:
    spec = VALUE_SETS[name]
    return merged_values(spec.get("values", ()), spec.get("sets", ()))


WITH_OFFICIAL_AIRFLOW = [name for name in VALUE_SETS if values_of(name)["airflow"]["enabled"]]


def e2e_objects() -> dict[tuple[str, str], dict[str, Any]]:
    docs = yaml.safe_load_all((REPO / "k8s/e2e/airflow.yaml").read_text())
    return {(d["kind"], d["metadata"]["name"]): d for d in docs if d}


def test_the_table_records_its_source() -> None:
    source = contract()["source"]
    lock = yaml.safe_load((REPO / "charts/genai-pipeline/Chart.lock").read_text())
    assert source["pinned"] == next(d["version"] for d in lock["dependencies"] if d["name"] == "airflow")
    assert all(re.fullmatch(r"[0-9a-f]{40}", read["commit"]) for read in source["read"])


def test_the_e2e_airflow_runs_the_charts_args_probes_init_container_and_env() -> None:
    objects = e2e_objects()
    pod = objects[("Deployment", "airflow")]["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    table = contract()
    secrets = secret_env(E2E_RELEASE)

    def check_env(container: dict[str, Any]) -> None:
        env = {e["name"]: e for e in container["env"]}
        for name, (secret, key) in secrets.items():
            assert env[name]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": key}, (container["name"], name)
        assert env["AIRFLOW_HOME"]["value"] == table["env"]["AIRFLOW_HOME"]["value"]
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        config = table["mounts"]["config"]
        assert mounts[config["path"]]["subPath"] == config["key"] and mounts[config["path"]]["readOnly"] is True
        assert table["mounts"]["logs"] in mounts

    assert set(containers) == set(table["components"])
    for name, component in table["components"].items():
        container = containers[component["container"]]
        assert "command" not in container, f"{name}: the chart sets no command; the image's entrypoint runs"
        assert container["args"] == component["args"], name
        assert {k for k in container if k.endswith("Probe")} == set(component["probes"]), name
        for kind in component["probes"]:
            # The handler exactly; the timings are values of the chart (<component>.<probe>.*), which a slower
            # node may only loosen.
            expected, actual = probe(name, kind), container[kind]
            assert set(actual) == set(expected), f"{name} {kind}"
            handler = "exec" if "exec" in expected else "httpGet"
            assert actual[handler] == expected[handler], f"{name} {kind}"
            assert all(actual[k] >= expected[k] for k in expected if k != handler), f"{name} {kind}: tighter"
        check_env(container)
    assert containers["api-server"]["ports"] == [table["components"]["api-server"]["port"]]
    wait = table["wait_for_migrations"]
    [init] = pod["initContainers"]
    assert init["name"] == wait["container"] and init["args"] == wait["args"] and "command" not in init
    check_env(init)
    migrate = table["jobs"]["migrate-database"]
    job = objects[("Job", fill(migrate["name"], E2E_RELEASE))]["spec"]["template"]["spec"]
    [container] = job["containers"]
    assert container["name"] == migrate["container"] and container["args"] == migrate["args"]
    check_env(container)
    # The pod's identity is the one the chart gives its scheduler, which runs LocalExecutor's tasks.
    assert pod["serviceAccountName"] == service_accounts(E2E_RELEASE)["scheduler"]
    assert ("ServiceAccount", pod["serviceAccountName"]) in objects


def test_the_e2e_secrets_are_the_ones_the_chart_names() -> None:
    script = (REPO / "scripts/cluster/prepare.sh").read_text()
    made = set(re.findall(r'^secret (\S+) "([\w-]+)=', script, re.MULTILINE))
    assert set(secret_env(E2E_RELEASE).values()) <= made


def test_the_probes_are_what_the_chart_runs() -> None:
    """The table itself: every exec probe runs /entrypoint by path, which the image must have."""
    for name, component in contract()["components"].items():
        for kind, fact in component["probes"].items():
            if "exec" in fact:
                assert f"exec {contract()['image']['entrypoint_path']} \\\nairflow jobs check" in fact["exec"][2], (
                    name,
                    kind,
                )
    dockerfile = (REPO / "images/airflow/Dockerfile").read_text()
    assert 'ENTRYPOINT ["/entrypoint"]' in dockerfile and "COPY entrypoint.sh /entrypoint" in dockerfile


def notes(offline: Path, tmp_path: Path, release: str, *sets: str, values: tuple[Path, ...] = ()) -> str:
    """NOTES.txt as helm renders it: helm template skips NOTES.txt, so a copy renders it into a ConfigMap."""
    chart = tmp_path / "chart"
    shutil.copytree(offline, chart)
    text = (chart / "templates/NOTES.txt").read_text()
    (chart / "templates/NOTES.txt").unlink()
    (chart / "templates/_notes.tpl").write_text('{{- define "test.notes" -}}\n' + text + "\n{{- end -}}\n")
    (chart / "templates/notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n"
        '  notes: {{ include "test.notes" . | toJson }}\n'
    )
    args = [str(helm()), "template", release, str(chart), "--namespace", "genai-pipeline", "--kube-version", "1.34.0"]
    args += ["--show-only", "templates/notes.yaml", "--set", "airflow.enabled=true,weaviate.enabled=false"]
    for path in values:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    return yaml.safe_load(subprocess.run(args, capture_output=True, text=True, check=True).stdout)["data"]["notes"]


@pytest.mark.parametrize("release", ["genai-pipeline", "kb", "my-airflow"])
def test_notes_name_the_api_server_the_official_chart_makes(offline: Path, tmp_path: Path, release: str) -> None:
    text = notes(offline, tmp_path, release)
    names = api_server(release)
    assert re.findall(r"port-forward svc/(\S+)", text) == [names["service"]]
    assert re.findall(r"exec deploy/(\S+)", text) == [names["deployment"]]


@pytest.mark.parametrize("name", WITH_OFFICIAL_AIRFLOW)
def test_notes_of_every_values_set_name_the_official_charts_api_server(
    offline: Path, tmp_path: Path, name: str
) -> None:
    spec = VALUE_SETS[name]
    release = AIRFLOW_RELEASE[name]
    text = notes(offline, tmp_path, release, *spec.get("sets", ()), values=spec.get("values", ()))
    assert re.findall(r"port-forward svc/(\S+) 8080", text) == [api_server(release)["service"]], name


def test_skaffold_forwards_the_api_server_the_official_chart_makes() -> None:
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    release = config["deploy"]["helm"]["releases"][0]["name"]
    forwarded = {f["resourceName"] for f in config["portForward"] if f["port"] == 8080}
    assert forwarded == {api_server(release)["service"]}


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_launcher_role_binds_only_accounts_the_official_chart_makes(offline: Path, name: str) -> None:
    spec = VALUE_SETS[name]
    docs = render(offline, *spec.get("sets", ()), values=spec.get("values", ()), release="genai-pipeline")
    [binding] = [d for (kind, _), d in docs.items() if kind == "RoleBinding"]
    bound = {s["name"] for s in binding["subjects"]}
    release = AIRFLOW_RELEASE[name]
    assert bound <= set(service_accounts(release).values()), f"{name}: not made by the chart: {bound}"
    expected = {service_accounts(release)["scheduler"]} if name == "kubernetes-mode-e2e" else launcher_accounts(release)
    assert bound >= expected, f"{name}: the chart's task-running accounts are not all bound"
    [check] = [d for (kind, _), d in docs.items() if kind == "Pod"]
    assert check["spec"]["serviceAccountName"] in bound


def test_a_release_named_like_airflow_gets_the_accounts_without_a_second_airflow(offline: Path) -> None:
    docs = render(offline, release="my-airflow")
    [binding] = [d for (kind, _), d in docs.items() if kind == "RoleBinding"]
    assert {s["name"] for s in binding["subjects"]} == launcher_accounts("my-airflow")
    assert "my-airflow-scheduler" in launcher_accounts("my-airflow")


@pytest.mark.parametrize("name", WITH_OFFICIAL_AIRFLOW)
def test_no_helm_hook_holds_back_what_wait_and_gitops_wait_for(name: str) -> None:
    airflow = values_of(name)["airflow"]
    for job, fact in contract()["jobs"].items():
        values = airflow.get("migrateDatabaseJob" if job == "migrate-database" else "createUserJob", {})
        if values.get("enabled", True):
            assert {k: values.get(k, True) for k in fact["required_with_wait"]} == fact["required_with_wait"], job


def test_make_deploy_waits_only_on_what_can_become_ready() -> None:
    args = subprocess.run(
        ["bash", str(REPO / "scripts/kind.sh"), "helm-args", "abc"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "--wait" in args
    files = tuple(REPO / args[i + 1] for i, a in enumerate(args) if a == "-f")
    sets = tuple(args[i + 1] for i, a in enumerate(args) if a == "--set")
    airflow = merged_values(files, sets)["airflow"]
    migrate = contract()["jobs"]["migrate-database"]["required_with_wait"]
    assert {k: airflow["migrateDatabaseJob"][k] for k in migrate} == migrate
    create = airflow["createUserJob"]
    assert create["enabled"] is False or create["useHelmHooks"] is False
    assert airflow["images"]["airflow"]["tag"] == "abc" and airflow["defaultAirflowTag"] == "abc"


@pytest.mark.parametrize("name", WITH_OFFICIAL_AIRFLOW)
def test_the_metadata_database_is_restricted_or_external(name: str) -> None:
    airflow = values_of(name)["airflow"]
    database = airflow.get("postgresql", {})
    if database.get("enabled", True) is False:
        assert airflow["data"]["metadataSecretName"], f"{name}: no bundled database and no external one"
        return
    fact = contract()["postgresql"]
    pod, container = (database["primary"][key.split(".")[1]] for key in fact["security_context_keys"])
    assert pod["runAsNonRoot"] is True and pod["seccompProfile"]["type"] == "RuntimeDefault", name
    assert container["allowPrivilegeEscalation"] is False and container["capabilities"]["drop"] == ["ALL"], name
    assert container["readOnlyRootFilesystem"] is True and container["runAsNonRoot"] is True, name
    mounted = {m["mountPath"] for m in database["primary"]["extraVolumeMounts"]}
    assert set(fact["writable_paths"]) <= mounted, f"{name}: a read-only root with nowhere to write"


@pytest.mark.parametrize("name", WITH_OFFICIAL_AIRFLOW)
def test_probe_overrides_set_only_timings_of_probes_the_chart_has(name: str) -> None:
    airflow = values_of(name)["airflow"]
    for component, fact in contract()["components"].items():
        for key, value in airflow.get(fact["values_key"], {}).items():
            if key.endswith("Probe"):
                assert key in fact["probes"], f"{name}: {component} has no {key} in the chart"
                assert set(value) <= set(fact["probes"][key]["timing"]), f"{name}: {component}.{key}: {value}"


def test_prod_uses_an_external_metadata_database() -> None:
    assert values_of("gitops-prod")["airflow"]["postgresql"]["enabled"] is False


def documented_command(pattern: str) -> str:
    """The `$(...)` command docs/deploy.md gives for a key."""
    text = (REPO / "docs/deploy.md").read_text()
    match = re.search(pattern + r'="\$\((.+?)\)"', text)
    assert match, f"docs/deploy.md documents no command for {pattern}"
    return match.group(1)


def test_the_documented_fernet_key_command_makes_a_key_airflow_accepts() -> None:
    command = documented_command("fernet-key")
    keys = {subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True).stdout.strip()}
    keys.add(subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True).stdout.strip())
    assert len(keys) == 2, "the command must make a new random key each time"
    for key in keys:
        token = Fernet(key).encrypt(b"connection")
        assert Fernet(key).decrypt(token) == b"connection"
    # The command the docs gave before: 64 hex digits, which Fernet refuses.
    with pytest.raises(ValueError):
        Fernet(subprocess.run(["openssl", "rand", "-hex", "32"], capture_output=True, text=True).stdout.strip())


def test_the_documented_secrets_are_the_ones_the_gitops_values_name() -> None:
    airflow = yaml.safe_load((REPO / "k8s/gitops/values-gitops.yaml").read_text())["airflow"]
    prod = yaml.safe_load((REPO / "k8s/gitops/envs/prod/values.yaml").read_text())["airflow"]
    text = (REPO / "docs/deploy.md").read_text()
    keys = {source["key"] for source in contract()["env"].values() if "secret" in source}
    named = {
        airflow["fernetKeySecretName"]: "fernet-key",
        airflow["jwtSecretName"]: "jwt-secret",
        airflow["apiSecretKeySecretName"]: "api-secret-key",
        prod["data"]["metadataSecretName"]: "connection",
    }
    assert set(named.values()) == keys
    for secret, key in named.items():
        assert re.search(rf"create secret generic {secret} \\\n\s+--from-literal={key}=", text), secret
