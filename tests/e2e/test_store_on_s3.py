"""One ingestion with the store on S3: the step pods mount no shared claim and reach the bucket through a Service.

Run by `make e2e` after tests/e2e/test_kubernetes_mode.py (file order). The release is upgraded as a user would
switch to an object store (``storeUri: s3://…``, no shared claim, the source in the bucket, and here a collection of
its own), Airflow restarts to read the new settings, and one ingestion runs; the release is rolled back after.
The gateway (k8s/e2e/s3-gateway.yaml) and the credentials in the pipeline Secret are scripts/e2e.sh's.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.cluster import NAMESPACE, SHARED, TAG, PodRecorder, airflow, kubectl, object_count, wait_for

from genai_pipeline.steps.keys import safe_name

pytestmark = pytest.mark.e2e
BUCKET = "pipeline"
STORE = f"s3://{BUCKET}/store"
SOURCE = f"s3://{BUCKET}/corpus"
COLLECTION = "KnowledgeBaseS3"
RELEASE = "genai-pipeline"
REPO = Path(__file__).resolve().parents[2]


def credentials() -> dict[str, str]:
    """The gateway's credentials as scripts/e2e.sh wrote them (AWS_* lines)."""
    lines = Path(os.environ["E2E_S3_ENV"]).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def helm(*args: str) -> str:
    from genai_pipeline.config import Settings
    from genai_pipeline.local.go_tools import ensure_helm

    command = [str(ensure_helm(Settings().cache_dir)), *args, "--namespace", NAMESPACE]
    result = subprocess.run([*command, "--kubeconfig", os.environ["KUBECONFIG"]], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args)}: {result.stderr}")
    return result.stdout


DAGS = sorted(p.stem for p in (REPO / "dags").glob("*.py"))


def quiet() -> bool:
    """No DAG run queued or running: a restart now interrupts nothing (and leaves no pod to be re-attached to)."""
    api = airflow()
    return all(r["state"] not in ("queued", "running") for d in DAGS for r in api.runs(d))


def restart_airflow() -> None:
    """Airflow reads the settings ConfigMap at start: restart it, and wait until its API answers with the DAG parsed.

    The client is made inside the probe: right after the rollout the API server may still answer 404 or refuse.
    """
    kubectl("rollout", "restart", "-n", NAMESPACE, "deployment/airflow")
    kubectl("rollout", "status", "-n", NAMESPACE, "deployment/airflow", "--timeout=300s")
    wait_for(lambda: airflow().dag_loaded("ingest_knowledge_base"), 300, "ingestion DAG parsed after the restart")


@pytest.fixture(scope="module")
def bucket() -> Any:
    """The bucket, with the packaged sample knowledge base uploaded as the source's documents."""
    import s3fs

    from genai_pipeline.steps.documents import resolve_root

    env = credentials()
    # No region: s3fs would send it as the bucket's location constraint, which us-east-1 must not have.
    fs = s3fs.S3FileSystem(
        key=env["AWS_ACCESS_KEY_ID"], secret=env["AWS_SECRET_ACCESS_KEY"], endpoint_url=env["AWS_ENDPOINT_URL"]
    )
    wait_for(lambda: fs.ls("") is not None, 60, "the S3 gateway answering")
    fs.mkdir(BUCKET)
    sample = Path(resolve_root("package://genai_pipeline/sample_kb"))
    for path in sorted(p for p in sample.rglob("*") if p.is_file()):
        fs.pipe(f"{BUCKET}/corpus/{path.relative_to(sample).as_posix()}", path.read_bytes())
    return fs


@pytest.fixture(scope="module")
def on_s3(bucket: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The release switched to the bucket, one ingestion run through Airflow; then the release as it was."""
    from genai_pipeline.local.offline_chart import offline_chart

    folder = tmp_path_factory.mktemp("chart")
    chart = offline_chart(folder)
    # The deploy's values with the store, the sources and the collection replaced whole (helm merges maps, so a
    # source cannot be dropped by --set), and no claim.
    values = yaml.safe_load((REPO / "k8s/e2e/values.yaml").read_text())
    values["storeUri"] = STORE
    values["sharedStorage"]["create"] = False  # the claim itself is kept (helm.sh/resource-policy: keep)
    values["pipeline"]["runtime"]["shared_volume_claim"] = ""
    values["pipeline"]["ingest"]["sources"] = {"s3docs": SOURCE}
    values["pipeline"]["weaviate"]["collection"] = COLLECTION
    (folder / "s3-values.yaml").write_text(yaml.safe_dump(values))
    wait_for(quiet, 900, "the runs the earlier tests started (an asset-triggered generation, say) to finish")
    helm(
        "upgrade", RELEASE, str(chart), "--reset-values", "-f", str(folder / "s3-values.yaml"),
        "--set", f"images.tag={TAG}", "--wait", "--timeout", "5m",
    )  # fmt: skip
    try:
        restart_airflow()
        api = airflow()
        with PodRecorder(dag_id="ingest_knowledge_base") as recorder:
            run_id = api.trigger("ingest_knowledge_base")
            run = wait_for(
                lambda: (r := api.run("ingest_knowledge_base", run_id))["state"] in ("success", "failed") and r,
                900,
                "the ingestion run on S3",
            )
            time.sleep(2)  # the last pod's final status reaches the watch
        yield {"run": run, "pods": list(recorder.pods.values())}
    finally:
        helm("rollback", RELEASE, "--wait", "--timeout", "5m")
        restart_airflow()


def test_an_ingestion_with_the_store_on_s3_loads_the_bucket_s_documents(on_s3: dict[str, Any], bucket: Any) -> None:
    from genai_pipeline.config import Settings
    from genai_pipeline.steps.ingest import source_chunks

    assert on_s3["run"]["state"] == "success", on_s3["run"]
    report = json.loads(bucket.cat(f"{BUCKET}/store/reports/ingest/latest.json"))
    expected = sum(len(c) for _, c in source_chunks(Settings(), {"s3docs": "package://genai_pipeline/sample_kb"}))
    assert (report["documents"], report["ingested"], report["rejected"]) == (8, 8, [])
    assert report["chunks"] == expected == object_count(COLLECTION)
    run_key = safe_name(on_s3["run"]["dag_run_id"])
    assert bucket.exists(f"{BUCKET}/store/runs/ingest/{run_key}/plan.json")  # the run's record, in the bucket
    assert not bucket.exists(f"{BUCKET}/store/ingest/{run_key}")  # its bulk files, removed by the teardown
    assert not (SHARED / "store" / "runs" / "ingest" / run_key).exists()  # nothing of it on the claim


def test_the_step_pods_mount_no_shared_claim_and_name_the_bucket(on_s3: dict[str, Any]) -> None:
    pods = on_s3["pods"]
    assert {p.step for p in pods} >= {"plan", "chunk", "embed", "load", "report"}
    for pod in pods:
        claims = [v for v in pod.spec.get("volumes") or [] if v.get("persistentVolumeClaim")]
        assert claims == [], f"{pod.name} mounts {claims}"
        env = {e["name"]: e.get("value") for c in pod.spec["containers"] for e in c.get("env") or []}
        assert env.get("PIPELINE_STORE_URI") == STORE, pod.name
