"""Cluster benchmark: ingestion in kubernetes mode (every step a pod) against embedded mode, in one run.

    BENCH=1 BENCH_ARGS="--docs 1000" make e2e      # deploys the e2e cluster, then runs this

Ingests a generated corpus (the same documents bench/ingest.py generates) through the in-cluster Airflow and
prints docs/s, chunks/s, pods launched, the median and p95 from pod creation to its step container's start,
and the ratio to the embedded figure, measured by bench/ingest.py in the same run on the same machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.cluster import (  # noqa: E402 - the repository root is put on the path first
    PodRecorder,
    airflow,
    latest_report,
    median,
    object_count,
    percentile,
    run_ingestion,
    write_corpus,
)


def embedded(docs: int) -> dict:
    """bench/ingest.py's first run (scheduler + LocalExecutor, steps in the worker) on the same corpus."""
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "ingest.py"), "--docs", str(docs), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000)
    args = parser.parse_args()

    write_corpus(args.docs)
    started = time.perf_counter()
    with PodRecorder() as recorder:
        run = run_ingestion(airflow(), timeout=3600)
        time.sleep(2)
    wall = time.perf_counter() - started
    if run["state"] != "success":
        raise SystemExit(f"cluster run {run['dag_run_id']} ended {run['state']}")
    cluster = latest_report()
    tis = len(airflow().task_instances("ingest_knowledge_base", run["dag_run_id"]))
    latencies = recorder.start_latencies()
    by_step: dict[str, int] = {}
    for pod in recorder.pods.values():
        by_step[pod.step] = by_step.get(pod.step, 0) + 1

    steps = ", ".join(f"{step} {count}" for step, count in sorted(by_step.items()))
    local = embedded(args.docs)
    ratio = cluster["docs_per_s"] / local["docs_per_s"]
    print(
        "\n".join(
            [
                f"corpus                  {cluster['documents']} docs ({args.docs} generated + the sample KB), "
                f"{cluster['chunks']} chunks in {cluster['batches']} batches",
                f"cluster (pods)          {cluster['docs_per_s']:.2f} docs/s, {cluster['chunks_per_s']:.1f} chunks/s "
                f"in {cluster['seconds']:.1f} s (plan→report; trigger→done {wall:.1f} s)",
                f"embedded (same run)     {local['docs_per_s']:.2f} docs/s, {local['chunks_per_s']:.1f} chunks/s "
                f"in {local['seconds']:.1f} s",
                f"ratio cluster/embedded  {ratio:.2f} (docs/s)",
                f"pods launched           {len(recorder.pods)} ({steps})",
                f"pod create -> start     median {median(latencies):.2f} s, p95 {percentile(latencies, 0.95):.2f} s",
                f"task instances          {tis}",
                f"Weaviate objects        {object_count()}",
            ]
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
