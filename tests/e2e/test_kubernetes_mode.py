"""Kubernetes mode on a real cluster: run by `make e2e` (scripts/e2e.sh deploys first), never by `make test`.

The tests run in file order on one deployment: manifests and Pod Security first, then the first ingestion,
the re-run, and the fault run, each building on the state the previous one left.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from tests.e2e.cluster import (
    NAMESPACE,
    SHARED,
    STEP_PODS,
    TAG,
    PodRecorder,
    airflow,
    embedded_chunk_count,
    kubectl,
    kubectl_run,
    latest_report,
    object_count,
    run_ingestion,
    trigger_start,
    wait_for,
    wait_for_ingestion,
    write_corpus,
)

from genai_pipeline.lineage_events import LineageGraph, step_runs
from genai_pipeline.steps.generation import front_matter
from genai_pipeline.steps.registry import image_of

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
DOCS = 200


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory, offline: Path) -> list[Path]:
    """Every manifest the project renders: the chart under each deploy path's values, and k8s/."""
    import yaml
    from tests.charts.rendering import MODEL_SERVER_ON, render_list

    out = tmp_path_factory.mktemp("rendered")
    gitops = REPO / "k8s/gitops"
    variants: dict[str, tuple[tuple[Path, ...], tuple[str, ...]]] = {
        "chart-defaults": ((), ()),
        "chart-e2e": ((REPO / "k8s/e2e/values.yaml",), (f"images.tag={TAG}",)),
        "chart-model-server": ((), (*MODEL_SERVER_ON, "images.tag=x")),
        "chart-web-page": ((), ("webPage.enabled=true", "images.tag=x")),
        "chart-kind": ((REPO / "k8s/kind/values-kind.yaml",), ("images.tag=x",)),
        "chart-gitops-prod": ((gitops / "values-gitops.yaml", gitops / "envs/prod/values.yaml"), ()),
    }
    files = []
    for name, (values, sets) in variants.items():
        docs = render_list(offline, *sets, values=values, release="genai-pipeline", namespace=NAMESPACE)
        (out / f"{name}.yaml").write_text(yaml.safe_dump_all(docs))
        files.append(out / f"{name}.yaml")
    # k8s/e2e as deployed: through scripts/e2e.sh's overlay with the built tag (a Job's pod template is immutable,
    # so the untagged render would be refused as a change).
    overlay = os.environ.get("E2E_OVERLAY", str(REPO / "k8s/e2e"))
    (out / "e2e-kustomize.yaml").write_text(kubectl("kustomize", overlay))
    return [*files, out / "e2e-kustomize.yaml", REPO / "k8s/namespace.yaml", REPO / "k8s/e2e/storage.yaml"]


def test_every_rendered_manifest_passes_server_side_dry_run(rendered: list[Path]) -> None:
    """Validated and admitted by the real API server (schemas, Pod Security), changing nothing."""
    # The chart's renders go to a fresh restricted namespace, so they neither clash with the release nor
    # pass only because objects exist already.
    scratch = "genai-dryrun"
    kubectl_run("create", "namespace", scratch)  # already there from an earlier run is fine
    kubectl("label", "namespace", scratch, "--overwrite", "pod-security.kubernetes.io/enforce=restricted")
    # The helm test pod runs as the launcher's ServiceAccount, which the Airflow deployment makes, not the chart.
    for account in ("genai-pipeline-airflow-scheduler", "genai-airflow-scheduler"):
        kubectl_run("create", "serviceaccount", account, "-n", scratch)
    for path in rendered:
        namespace = scratch if path.name.startswith("chart-") else NAMESPACE
        result = kubectl_run("apply", "--dry-run=server", "-n", namespace, "-f", str(path))
        assert result.returncode == 0, f"{path.name}: {result.stderr}"
        assert "PodSecurity" not in result.stderr, f"{path.name}: {result.stderr}"


def test_helm_test_passed_after_the_deploy() -> None:
    """scripts/e2e.sh ran `helm test` as a user would: Weaviate and the collection, and a step pod admitted."""
    import os

    log = (Path(os.environ["E2E_LOGS"]) / "helm-test.log").read_text()
    assert "Phase:          Succeeded" in log, log
    assert "ok      weaviate: Weaviate 10.0.0.80:8080 ready; collection KnowledgeBase" in log, log
    assert f"ok      step-pod: a chunk step pod (genai-pipeline/chunk:{TAG}" in log, log
    assert "as genai-pipeline-steps" in log and "FAILED" not in log, log


def test_the_namespace_enforces_the_restricted_pod_security_level() -> None:
    labels = kubectl("get", "namespace", NAMESPACE, "-o", "jsonpath={.metadata.labels}")
    assert '"pod-security.kubernetes.io/enforce":"restricted"' in labels
    # A pod like the provider's default XCom sidecar (no securityContext) is refused by the API server.
    out = kubectl(
        "run",
        "unhardened",
        "-n",
        NAMESPACE,
        f"--image=genai-pipeline/xcom-sidecar:{TAG}",
        "--image-pull-policy=Never",
        "--restart=Never",
        "--dry-run=server",
        "--command",
        "--",
        "sh",
        check=False,
    )
    assert "violates PodSecurity" in out and "restricted" in out


@pytest.fixture(scope="module")
def first_run() -> dict:
    """The sample knowledge base plus a generated corpus, ingested once through Airflow in the cluster."""
    write_corpus(DOCS)
    with PodRecorder() as recorder:
        run = run_ingestion(airflow())
        time.sleep(2)  # the last pod's final status reaches the watch
    return {"run": run, "pods": recorder.pods, "report": latest_report()}


def test_asset_triggered_ingestion_succeeds_and_matches_embedded_mode(first_run: dict) -> None:
    run, report = first_run["run"], first_run["report"]
    assert run["state"] == "success", run
    assert run["run_type"] == "asset_triggered"
    expected = embedded_chunk_count()
    assert report["documents"] == DOCS + 8 and report["ingested"] == DOCS + 8
    assert report["rejected"] == []
    assert report["chunks"] == expected
    assert object_count() == expected


def test_every_chunk_embed_and_load_ran_as_a_hardened_pod_from_its_image(first_run: dict) -> None:
    pods = list(first_run["pods"].values())
    batches = first_run["report"]["batches"]
    for step in STEP_PODS:
        mine = [p for p in pods if p.step == step]
        assert len(mine) >= batches, f"{step}: {len(mine)} pods for {batches} batches"
        image = image_of(step)  # the registry's: chunk, embed, and load in the Weaviate-facing control image
        for pod in mine:
            assert pod.images()["base"] == f"genai-pipeline/{image}:{TAG}"
            assert pod.images()["airflow-xcom-sidecar"] == f"genai-pipeline/xcom-sidecar:{TAG}"
            assert "Succeeded" in pod.phases, (pod.name, pod.phases)
    for pod in pods:  # every step pod, create_schema / plan / prune / report / cleanup included
        spec = pod.spec
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 10001
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["serviceAccountName"] == "genai-pipeline-steps" and spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]
            assert context["readOnlyRootFilesystem"] is True
            assert container["resources"]["requests"] and container["resources"]["limits"]
        env = {e["name"]: e.get("value", "") for c in spec["containers"] for e in c.get("env") or []}
        assert not any("KEY" in name for name in env), "secrets only through the Secret, never the pod spec"
    assert {p.step for p in pods} >= {"create_schema", "plan", "chunk", "embed", "load", "prune", "report", "cleanup"}


def test_pod_events_show_the_images_already_on_the_node() -> None:
    events = kubectl("get", "events", "-n", NAMESPACE, "--field-selector", "reason=Pulled", "-o", "name")
    assert events.strip(), "no Pulled events recorded"
    messages = kubectl(
        "get",
        "events",
        "-n",
        NAMESPACE,
        "--field-selector",
        "reason=Pulled",
        "-o",
        "jsonpath={range .items[*]}{.message}{'\\n'}{end}",
    )
    assert f"genai-pipeline/embed:{TAG}" in messages and "already present on machine" in messages


def test_a_second_run_makes_no_embedding_calls(first_run: dict) -> None:
    before = object_count()
    run = run_ingestion(airflow())
    report = latest_report()
    assert run["state"] == "success"
    assert report["embed_calls"] == 0 and report["ingested"] == 0
    assert report["skipped_unchanged"] == DOCS + 8
    assert object_count() == before


def test_a_deleted_embed_pod_is_retried_with_nothing_lost_or_duplicated(first_run: dict) -> None:
    """Change the corpus so embedding has work, delete the embed pod mid-run, and check the outcome."""
    write_corpus(DOCS, seed=11)  # same paths, new text: every generated document changes
    expected = embedded_chunk_count()
    api = airflow()
    with PodRecorder() as recorder:
        before = trigger_start(api)
        pod = wait_for(lambda: next(recorder.running("embed"), None), 600, "a running embed pod", interval=0.2)
        kubectl("delete", "pod", "-n", NAMESPACE, pod.name, "--wait=false")
        run = wait_for_ingestion(api, before)
    assert run["state"] == "success", run
    embeds = [
        t
        for t in api.task_instances("ingest_knowledge_base", run["dag_run_id"])
        if t["task_id"] == "ingest_batch.embed"
    ]
    retried = [t for t in embeds if t["try_number"] > 1]
    assert retried, "the deleted pod's task was not retried"
    log = api.task_log("ingest_knowledge_base", run["dag_run_id"], "ingest_batch.embed", 1, retried[0]["map_index"])
    assert "INFRASTRUCTURE failure" in log and "STEP failure" not in log, log[-3000:]
    assert object_count() == expected  # nothing missing, nothing duplicated
    report = latest_report()
    assert report["ingested"] == DOCS and report["skipped_unchanged"] == 8  # the sample KB did not change
    assert report["rejected"] == []


FINE_TUNING_CHAIN = ("format_examples", "evaluate_examples", "fine_tune", "champion_challenger")
# Each runs as a pod from the image the step registry names for it.
FINE_TUNING_PODS = (
    "list_example_groups",
    "format_examples",
    "format_report",
    "evaluate_examples",
    "combine_examples",
    "submit_fine_tune",
    "fine_tune_results",
    "score_models",
    "plan_topics",
    "generate_post",
    "report_posts",
)


def follow_chain(api, first_run: str, timeout: float = 1800) -> dict[str, dict]:
    """Each DAG of the fine-tuning path, from the run the previous one's Asset events caused, once finished."""
    runs, source = {}, None
    for dag_id in FINE_TUNING_CHAIN:
        if source is None:
            run_id = first_run
        else:
            run_id = wait_for(lambda d=dag_id, s=source: api.run_caused_by(d, *s), 600, f"the {dag_id} run")
        runs[dag_id] = wait_for(
            lambda d=dag_id, r=run_id: (run := api.run(d, r))["state"] in ("success", "failed") and run,
            timeout,
            f"{dag_id} {run_id}",
        )
        assert runs[dag_id]["state"] == "success", (dag_id, run_id)
        source = (dag_id, run_id)
    return runs


def test_the_model_server_on_the_bridge_refuses_a_request_without_its_key() -> None:
    """It listens on every address so the pods reach it; the pods pass (the test below) with the Secret's key."""
    base_url = yaml.safe_load((REPO / "k8s/e2e/values.yaml").read_text())["pipeline"]["openai"]["base_url"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base_url}/models", timeout=10)
    assert refused.value.code == 401


def test_the_fine_tuning_path_runs_its_steps_as_pods_against_the_model_server() -> None:
    """The example Assets of `start` began the chain during the first ingestion; a manual run re-uses its job."""
    api = airflow()
    first_format = min(
        (r for r in api.runs("format_examples") if r["run_type"] == "asset_triggered"), key=lambda r: r["run_after"]
    )
    runs = follow_chain(api, first_format["dag_run_id"])
    tune_run = runs["fine_tune"]["dag_run_id"]
    store = SHARED / "store" / "finetune"
    champion = json.loads((store / "champion" / "current.json").read_text())
    assert champion["model"].startswith("ft:") and champion["scores"]["challenger"]["items"] >= 1
    submitted = next(t for t in api.task_instances("fine_tune", tune_run) if t["task_id"] == "submit_fine_tune")
    assert submitted["state"] == "success"
    lineage = json.loads((store / "lineage" / f"{champion['model'].replace(':', '_')}.json").read_text())
    assert lineage["runs"]["fine_tune"] == tune_run and lineage["examples"]

    # Again by hand, recording the pods: every step is a hardened pod from its image; the job is not resubmitted.
    with PodRecorder() as recorder:
        runs = follow_chain(api, api.trigger("format_examples"))
        generated = api.trigger("generate_content", {"topics": ["Running the pipeline on Kubernetes"]})
        run = wait_for(
            lambda: (r := api.run("generate_content", generated))["state"] in ("success", "failed") and r, 900, "posts"
        )
        time.sleep(2)
    # A post by the champion from real chunks of the knowledge base, with its sources in the front matter, read by
    # the quality gate in the generate pod; the run ends as its verdict says (a post sent to review fails it).
    post = max(
        (SHARED / "store" / "posts").glob("running-the-pipeline-on-kubernetes-*.md"), key=lambda p: p.stat().st_mtime
    )
    front = front_matter(post.read_text())
    assert front["model"] == champion["model"]
    assert {s["uri"].split("/")[0] for s in front["sources"]} <= {"pipeline-docs", "generated"}
    assert front["status"] in ("published", "needs_review") and front["quality"]["status"] == front["status"]
    report = next(t for t in api.task_instances("generate_content", generated) if t["task_id"] == "report_posts")
    expected = "success" if front["status"] == "published" else "failed"
    assert run["state"] == report["state"] == expected, (front["quality"]["reasons"], run["state"], report["state"])
    pods = {p.step: p for p in recorder.pods.values()}
    for step in FINE_TUNING_PODS:
        assert pods[step].images()["base"] == f"genai-pipeline/{image_of(step)}:{TAG}", step
        assert pods[step].spec["securityContext"]["runAsNonRoot"] is True
    assert api.xcom("fine_tune", runs["fine_tune"]["dag_run_id"], "submit_fine_tune")["reused"] is True

    # OpenLineage from the pods' results: the scheduler's task processes wrote one event file per event.
    cat = "cat /opt/airflow/logs/lineage-event-*"
    events = [
        json.loads(line)
        for line in kubectl(
            "-n", NAMESPACE, "exec", "deploy/airflow", "-c", "scheduler", "--", "sh", "-c", cat
        ).splitlines()
        if line.startswith("{")
    ]
    graph = LineageGraph(step_runs(events))
    traced = graph.trace(graph.resolve(post.stem))  # documents → collection → post, examples → … → model
    assert traced.knowledge_bases and traced.sources["documents"] and traced.sources["examples"]
    assert {run.step for run in traced.steps} >= {"generate_post", "fine_tune_results", "submit_fine_tune"}
    kb = graph.trace(next(k for k in graph.writers if k[0].startswith("weaviate://"))).sources["documents"]
    assert set(traced.sources["documents"]) <= set(kb)
