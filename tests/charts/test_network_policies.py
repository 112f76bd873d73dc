"""Who may talk to whom once the chart's NetworkPolicies are enforced, computed from the rendered policies.

Each kind of pod carries the labels it really has: the chart's own from its rendered templates, step pods' from
the pod factory, Airflow's, its database's and Weaviate's from the official charts' facts
(official_airflow_chart.yaml, official_weaviate_chart.yaml).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.charts.network import Endpoint, allowed
from tests.charts.official_airflow_contract import contract, fill
from tests.charts.rendering import MODEL_SERVER_ON, REPO, render_list

from genai_pipeline.config import RuntimeSettings, Settings
from genai_pipeline.orchestration.pods import pod_options

RELEASE = "genai-pipeline"
AIRFLOW = ("scheduler", "api-server", "dag-processor", "triggerer", "worker")
WEAVIATE = yaml.safe_load((Path(__file__).with_name("official_weaviate_chart.yaml")).read_text())
# Outside the namespace: the API server's endpoint (kind's node), a hosted model API, a user's browser.
KUBERNETES_API = Endpoint("kubernetes-api", "172.18.0.2", namespace=None)
HOSTED_API = Endpoint("hosted-api", "104.18.6.192", namespace=None)
USER = Endpoint("user", "192.168.1.20", namespace=None)
DNS = Endpoint(
    "dns", "10.96.0.10", {"k8s-app": "kube-dns"}, "kube-system", {"kubernetes.io/metadata.name": "kube-system"}
)
METRICS = Endpoint("metrics", "10.244.9.9", {"k8s-app": "metrics-server"}, "kube-system", DNS.namespace_labels)
PORT = {"weaviate": 8080, "model-server": 8088, "web-page": 8090, "api-server": 8080, "airflow-database": 5432}


World = tuple[list[dict[str, Any]], dict[str, Endpoint]]


def policies_and_pods(chart: Path, *sets: str, values: tuple[Path, ...] = (), airflow_release: str = RELEASE) -> World:
    """The rendered NetworkPolicies (model server and web page on), and one pod of each kind by name."""
    sets = (*MODEL_SERVER_ON, "webPage.enabled=true", *sets)
    docs = render_list(chart, *sets, values=values, release=RELEASE)
    labels: dict[str, dict[str, str]] = {}
    for d in docs:
        if d["kind"] == "Deployment":
            pod_labels = d["spec"]["template"]["metadata"]["labels"]
            labels[pod_labels["app.kubernetes.io/component"]] = pod_labels
        elif d["kind"] == "Pod":
            labels[d["metadata"]["labels"]["app.kubernetes.io/component"]] = d["metadata"]["labels"]
    settings = Settings(runtime=RuntimeSettings(image_tag="t"))
    labels["step"] = pod_options(settings, "embed", "embed")["labels"]
    airflow = {k: fill(v, airflow_release) for k, v in contract()["pod_labels"].items()}
    labels |= {component: airflow | {"component": component} for component in AIRFLOW}
    labels["airflow-database"] = {
        k: fill(v, airflow_release) for k, v in contract()["postgresql"]["pod_labels"].items()
    }
    labels["weaviate"] = WEAVIATE["pod_labels"]
    pods = {name: Endpoint(name, f"10.244.0.{i}", pod) for i, (name, pod) in enumerate(labels.items(), start=2)}
    return [d for d in docs if d["kind"] == "NetworkPolicy"], pods


@pytest.fixture(scope="module")
def world(offline: Path) -> World:
    return policies_and_pods(offline)


def reachers(world: World, target: str, port: int) -> set[str]:
    policies, pods = world
    return {name for name, pod in pods.items() if name != target and allowed(policies, pod, pods[target], port)}


def test_the_policies_are_on_by_default_and_can_be_switched_off(offline: Path, world: World) -> None:
    policies, _ = world
    deny = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert any(p["spec"].get("policyTypes") == ["Ingress", "Egress"] and not p["spec"].get("egress") for p in deny)
    off = render_list(offline, "networkPolicy.enabled=false")
    assert not [d for d in off if d["kind"] == "NetworkPolicy"]


def test_a_step_pod_reaches_weaviate_and_the_model_server_and_nothing_else(world: World) -> None:
    policies, pods = world
    step = pods["step"]
    for target, port in (("weaviate", 8080), ("weaviate", 50051), ("model-server", 8088)):
        assert allowed(policies, step, pods[target], port), (target, port)
    for target, port in (("api-server", 8080), ("scheduler", 8793), ("airflow-database", 5432), ("web-page", 8090)):
        assert not allowed(policies, step, pods[target], port), target
    for outside in (KUBERNETES_API, HOSTED_API):
        assert not any(allowed(policies, step, outside, port) for port in (443, 6443)), outside.name
    assert reachers(world, "step", 8080) == set()  # Airflow reads logs and XCom through the API server


def test_the_web_page_reaches_weaviate_and_the_model_server_but_not_the_kubernetes_api(world: World) -> None:
    policies, pods = world
    page = pods["web-page"]
    assert allowed(policies, page, pods["weaviate"], 50051) and allowed(policies, page, pods["model-server"], 8088)
    assert not any(allowed(policies, page, KUBERNETES_API, port) for port in (443, 6443))
    assert not allowed(policies, page, pods["api-server"], 8080)


def test_nothing_reaches_the_model_server_but_steps_airflow_and_the_web_page(world: World) -> None:
    assert reachers(world, "model-server", 8088) == {"step", "web-page", *AIRFLOW}
    policies, pods = world
    assert not allowed(policies, USER, pods["model-server"], 8088)
    # It calls out to nothing but DNS: a model server cannot leak what it holds.
    assert not any(allowed(policies, pods["model-server"], outside, 443) for outside in (HOSTED_API, KUBERNETES_API))


def test_only_the_pipelines_clients_and_its_own_replicas_reach_weaviate(world: World) -> None:
    for port in (8080, 50051):
        assert reachers(world, "weaviate", port) == {"step", "web-page", "helm-test", *AIRFLOW}
    policies, pods = world
    replica = Endpoint("weaviate-1", "10.244.1.9", pods["weaviate"].labels)
    assert allowed(policies, pods["weaviate"], replica, 7000)  # gossip between replicas
    assert not allowed(policies, pods["weaviate"], pods["model-server"], 8088)


def test_airflow_launches_through_the_kubernetes_api_and_keeps_its_own_traffic(world: World) -> None:
    policies, pods = world
    for component in AIRFLOW:
        pod = pods[component]
        assert allowed(policies, pod, KUBERNETES_API, 6443) and allowed(policies, pod, KUBERNETES_API, 443)
        assert allowed(policies, pod, pods["api-server"], 8080)  # the execution API
        assert allowed(policies, pod, pods["airflow-database"], 5432)
    assert allowed(policies, pods["api-server"], pods["scheduler"], 8793)  # served task logs
    assert reachers(world, "airflow-database", 5432) == set(AIRFLOW)
    assert allowed(policies, pods["helm-test"], KUBERNETES_API, 6443)  # the launcher's dry run


def test_from_outside_only_the_two_uis_answer(world: World) -> None:
    policies, pods = world
    assert allowed(policies, USER, pods["api-server"], 8080) and allowed(policies, USER, pods["web-page"], 8090)
    reached = {name for name, pod in pods.items() if allowed(policies, USER, pod, PORT.get(name, 8080))}
    assert reached == {"api-server", "web-page"}
    assert not allowed(policies, USER, pods["scheduler"], 8793)


def test_ui_clients_narrow_who_opens_the_uis(offline: Path) -> None:
    policies, pods = policies_and_pods(offline, "networkPolicy.uiClients[0].ipBlock.cidr=192.168.1.0/24")
    assert allowed(policies, USER, pods["web-page"], 8090) and allowed(policies, USER, pods["api-server"], 8080)
    stranger = Endpoint("stranger", "203.0.113.7", namespace=None)
    assert not allowed(policies, stranger, pods["web-page"], 8090)
    assert not allowed(policies, stranger, pods["api-server"], 8080)


def test_every_pod_resolves_names_and_reaches_nothing_else_in_kube_system(offline: Path, world: World) -> None:
    policies, pods = world
    for name, pod in pods.items():
        assert allowed(policies, pod, DNS, 53, "UDP") and allowed(policies, pod, DNS, 53, "TCP"), name
    # The API server's default CIDR, 0.0.0.0/0, lets its callers (Airflow, the helm test) open its ports anywhere;
    # everything else reaches nothing more. Narrowed to the API's endpoint, no pod does.
    api_callers = {"helm-test", *AIRFLOW}
    assert {name for name, pod in pods.items() if allowed(policies, pod, METRICS, 443)} == api_callers
    narrowed, pods = policies_and_pods(offline, "networkPolicy.kubernetesApi.cidrs[0]=172.18.0.2/32")
    assert not any(allowed(narrowed, pod, METRICS, 443) for pod in pods.values())
    assert all(allowed(narrowed, pods[name], KUBERNETES_API, 6443) for name in api_callers)


def test_a_hosted_api_is_reachable_only_when_base_url_names_one(offline: Path) -> None:
    hosted = ("pipeline.openai.base_url=https://api.openai.com/v1", "modelServer.enabled=false")
    policies, pods = policies_and_pods(offline, *hosted)
    for name in ("step", "web-page", "scheduler", "triggerer"):
        assert allowed(policies, pods[name], HOSTED_API, 443), name
    assert not allowed(policies, pods["step"], HOSTED_API, 8080)
    assert "model-server" not in pods


def test_an_external_airflow_database_is_reached_at_its_addresses_only(offline: Path) -> None:
    with pytest.raises(subprocess.CalledProcessError) as refused:
        policies_and_pods(offline, "airflow.postgresql.enabled=false")
    assert "networkPolicy.externalDatabase.cidrs is required" in refused.value.stderr
    policies, pods = policies_and_pods(
        offline, "airflow.postgresql.enabled=false", "networkPolicy.externalDatabase.cidrs[0]=10.20.0.0/16"
    )
    database = Endpoint("database", "10.20.3.4", namespace=None)
    assert allowed(policies, pods["scheduler"], database, 5432) and not allowed(policies, pods["step"], database, 5432)
    assert not allowed(policies, pods["scheduler"], Endpoint("elsewhere", "10.30.0.1", namespace=None), 5432)


def test_flux_selects_the_airflow_release_it_installs(offline: Path) -> None:
    """Flux installs Airflow as release genai-airflow: its pods, not the pipeline release's, are Airflow."""
    gitops = REPO / "k8s/gitops"
    values = (gitops / "values-gitops.yaml", gitops / "flux/values-flux.yaml", gitops / "envs/dev/values.yaml")
    policies, pods = policies_and_pods(offline, values=values, airflow_release="genai-airflow")
    assert allowed(policies, pods["scheduler"], KUBERNETES_API, 6443)
    assert allowed(policies, pods["triggerer"], pods["model-server"], 8088)
    _, wrong = policies_and_pods(offline, airflow_release="genai-pipeline-other")
    assert not allowed(policies, wrong["scheduler"], KUBERNETES_API, 6443)


def test_the_evaluator_allows_only_what_a_rule_names() -> None:
    """Without policies all traffic flows; a bare default deny stops it all, egress and ingress alike."""
    a, b = Endpoint("a", "10.244.0.2", {"x": "1"}), Endpoint("b", "10.244.0.3", {"y": "1"})
    assert allowed([], a, b, 80)
    deny = {"metadata": {"name": "d"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}
    assert not allowed([deny], a, b, 80)
    egress = {
        "metadata": {"name": "e"},
        "spec": {
            "podSelector": {"matchLabels": {"x": "1"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"y": "1"}}}], "ports": [{"port": 80}]}],
        },
    }
    assert not allowed([deny, egress], a, b, 80)  # b's ingress is still denied
    ingress = {"metadata": {"name": "i"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]}}
    assert allowed([deny, egress, ingress], a, b, 80) and not allowed([deny, egress, ingress], a, b, 81)


def test_an_object_store_is_reachable_only_when_the_store_is_one(offline: Path) -> None:
    bucket = Endpoint("bucket", "52.216.1.2", namespace=None)
    policies, pods = policies_and_pods(offline)  # the store on the claim: a volume, no peer
    assert not any(allowed(policies, pods[name], bucket, 443) for name in ("step", "model-server", "web-page"))
    policies, pods = policies_and_pods(
        offline, "storeUri=s3://pipeline/store", "networkPolicy.objectStore.ports[0]=9000"
    )
    for name in ("step", "web-page", "scheduler", "triggerer", "model-server"):
        assert allowed(policies, pods[name], bucket, 9000), name
    assert not allowed(policies, pods["step"], bucket, 443)
