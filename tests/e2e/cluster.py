"""What the e2e test and bench/cluster.py need of a running e2e deployment (scripts/e2e.sh sets it up).

A pod recorder that watches the pipeline namespace (pods are deleted once they succeed, so their specs and
start times are captured as they happen), the Airflow REST client, Weaviate's object count, the generated
corpus on the shared volume and the embedded-mode chunk count of the same corpus.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from genai_pipeline.airflow_api import AirflowAPI

NAMESPACE = "genai-pipeline"
AIRFLOW_URL = "http://10.0.0.81:8080"
WEAVIATE_URL = "http://10.0.0.80:8080"
COLLECTION = "KnowledgeBase"
VOLUMES = Path(os.environ.get("E2E_VOLUMES", "/var/lib/genai-pipeline-node/volumes"))
SHARED = VOLUMES / "shared"
GENERATED = SHARED / "corpus" / "generated"
KUBECONFIG = os.environ.get("KUBECONFIG", "")
KUBECTL = os.environ.get("E2E_KUBECTL", "kubectl")
TAG = os.environ.get("E2E_TAG", "")
STEP_PODS = ("chunk", "embed", "load")


def kubectl_run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run kubectl against the e2e cluster; the caller reads the status and both streams."""
    return subprocess.run([KUBECTL, "--kubeconfig", KUBECONFIG, *args], capture_output=True, text=True)


def kubectl(*args: str, check: bool = True) -> str:
    """Run kubectl against the e2e cluster and return its output."""
    result = kubectl_run(*args)
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr}")
    return result.stdout + result.stderr


@dataclass
class PodRecord:
    """One step pod as the API server saw it: spec when created, when its containers started, how it ended."""

    name: str
    labels: dict[str, str]
    spec: dict[str, Any]
    created: datetime
    started: datetime | None = None
    phases: list[str] = field(default_factory=list)

    @property
    def step(self) -> str:
        """The pipeline step the pod ran (label set by the step-task factory)."""
        return self.labels.get("genai-pipeline/step", "")

    def images(self) -> dict[str, str]:
        """Container name -> image."""
        return {c["name"]: c["image"] for c in self.spec["containers"]}


class PodRecorder:
    """Watches the namespace in a thread and keeps every step pod it sees (of one DAG, when given).

    KubernetesPodOperator labels each pod with its ``dag_id``; filtering on it keeps a run of another DAG (an
    asset-triggered generation, say) out of what a test asserts about its own run.
    """

    def __init__(self, dag_id: str | None = None) -> None:
        from kubernetes import client, config

        config.load_kube_config(KUBECONFIG)
        self._api = client.CoreV1Api()
        self._selector = "app.kubernetes.io/part-of=genai-pipeline,genai-pipeline/step"
        if dag_id:
            self._selector += f",dag_id={dag_id}"
        self.pods: dict[str, PodRecord] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> PodRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def _watch(self) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self._api.list_namespaced_pod,
                    NAMESPACE,
                    label_selector=self._selector,
                    timeout_seconds=30,
                ):
                    self._record(event["object"])
                    if self._stop.is_set():
                        stream.stop()
            except Exception:  # a dropped watch is restarted; the records are kept
                time.sleep(0.5)

    def _record(self, pod: Any) -> None:
        name = pod.metadata.name
        record = self.pods.get(name)
        if record is None:
            spec = self._api.api_client.sanitize_for_serialization(pod.spec)
            record = PodRecord(name, dict(pod.metadata.labels or {}), spec, pod.metadata.creation_timestamp)
            self.pods[name] = record
        if pod.status.phase and (not record.phases or record.phases[-1] != pod.status.phase):
            record.phases.append(pod.status.phase)
        for status in pod.status.container_statuses or []:
            if status.name != "base" or record.started:
                continue
            state = status.state
            started = (state.running and state.running.started_at) or (state.terminated and state.terminated.started_at)
            if started:
                record.started = started

    def running(self, step: str) -> Iterator[PodRecord]:
        """Pods of a step seen Running and not yet finished."""
        return (p for p in list(self.pods.values()) if p.step == step and p.phases[-1:] == ["Running"])

    def start_latencies(self) -> list[float]:
        """Seconds from pod creation to its step container's start."""
        return [(p.started - p.created).total_seconds() for p in self.pods.values() if p.started]


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (p95 of 20 pods is the 19th)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered)) - 1))]


def median(values: list[float]) -> float:
    """Median, 0 for no values."""
    return statistics.median(values) if values else 0.0


def airflow() -> AirflowAPI:
    """The in-cluster API server, through its Service's ClusterIP."""
    return AirflowAPI(base_url=AIRFLOW_URL, allow_http=True)  # a ClusterIP, reached from the node itself


def wait_for(probe, timeout: float, what: str, interval: float = 2.0) -> Any:
    """Poll ``probe`` until it returns something truthy."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = probe()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


def trigger_start(api: AirflowAPI) -> set[str]:
    """Trigger ``start`` through the REST API; returns the ingestion runs that existed before it."""
    wait_for(lambda: api.dag_loaded("start") and api.dag_loaded("ingest_knowledge_base"), 300, "DAGs parsed")
    before = {r["dag_run_id"] for r in api.runs("ingest_knowledge_base")}
    api.trigger("start")
    return before


def wait_for_ingestion(api: AirflowAPI, before: set[str], timeout: float = 1800) -> dict[str, Any]:
    """The first ingestion run not in ``before``, once it has finished."""

    def finished() -> dict[str, Any] | None:
        new = [r for r in api.runs("ingest_knowledge_base") if r["dag_run_id"] not in before]
        return new[0] if new and new[0]["state"] in ("success", "failed") else None

    return wait_for(finished, timeout, "Asset-triggered ingestion run")


def run_ingestion(api: AirflowAPI, timeout: float = 1800) -> dict[str, Any]:
    """Trigger ``start`` and wait for the Asset-triggered ingestion run it causes."""
    return wait_for_ingestion(api, trigger_start(api), timeout)


def object_count(collection: str = COLLECTION) -> int:
    """Objects in a knowledge-base collection, asked of Weaviate through its Service."""
    query = json.dumps({"query": f"{{ Aggregate {{ {collection} {{ meta {{ count }} }} }} }}"}).encode()
    request = urllib.request.Request(
        f"{WEAVIATE_URL}/v1/graphql", data=query, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    return int(body["data"]["Aggregate"][collection][0]["meta"]["count"])


def latest_report() -> dict[str, Any]:
    """The summary the report step wrote to the shared store."""
    return json.loads((SHARED / "store" / "reports" / "ingest" / "latest.json").read_text())


def write_corpus(docs: int, seed: int = 7) -> None:
    """The generated corpus on the shared volume, owned by the pods' uid."""
    from genai_pipeline.synthetic_corpus import generate_corpus

    shutil.rmtree(GENERATED, ignore_errors=True)
    generate_corpus(GENERATED, docs, seed=seed)
    for path in [GENERATED, *GENERATED.rglob("*")]:
        os.chown(path, 10001, 10001)


def embedded_chunk_count() -> int:
    """Chunks the same corpus gives in embedded mode: the same steps' code, in this process."""
    from genai_pipeline.config import SAMPLE_KNOWLEDGE_BASE, Settings
    from genai_pipeline.steps.ingest import source_chunks

    sources = {"pipeline-docs": SAMPLE_KNOWLEDGE_BASE, "generated": str(GENERATED)}
    return sum(len(chunks) for _, chunks in source_chunks(Settings(), sources))
