"""Ingestion benchmark: end-to-end chunks/s through Airflow vs the same embedding model alone.

    uv run python bench/ingest.py --docs 1000              # generated corpus, scheduler + LocalExecutor
    uv run python bench/ingest.py --corpus DIR --dags-test # a given corpus, `airflow dags test`
    BENCH_RAW_SAMPLE=5000 ...                              # time the raw embedder on every k-th chunk only

Prints docs/s, chunks/s, the raw in-process embedding rate on the same chunks, their ratio, task
instances per run, and the re-run (which must make 0 embedding calls). One-time start-up (model load,
Weaviate and Airflow start) is reported separately and not counted in either rate.

It also accounts the CPU: what the raw embedder spends on all the chunks, and what the machine, Weaviate and the
rest (Airflow and the step tasks) spend during the first run. On a CPU-bound machine no schedule beats the busy
CPU seconds divided by the cores, so that ceiling shows how much of the gap to raw is work, not waiting.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from genai_pipeline.synthetic_corpus import generate_corpus


def measure_raw() -> dict[str, float]:
    """Chunk the corpus with the pipeline's own code, then time the embedder alone on those chunks."""
    started = time.perf_counter()
    from genai_pipeline.config import get_settings
    from genai_pipeline.models.embeddings import make_embedder
    from genai_pipeline.steps.ingest import source_chunks

    settings = get_settings()
    embedder = make_embedder(settings)
    embedder.embed(["warm up"])
    startup = time.perf_counter() - started
    texts = [c.embedding_text for _, chunks in source_chunks(settings, settings.ingest.sources) for c in chunks]
    total = len(texts)
    sample = int(os.environ.get("BENCH_RAW_SAMPLE") or 0)
    if sample and total > sample:  # every k-th chunk: the same mix of lengths, a fraction of the time
        texts = texts[:: -(-total // sample)]
    started, cpu = time.perf_counter(), time.process_time()
    for offset in range(0, len(texts), 512):
        embedder.embed(texts[offset : offset + 512])
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "chunks": total,
        "embedded": len(texts),
        "seconds": seconds,
        "chunks_per_s": len(texts) / seconds,
        # Every thread of the process (ONNX Runtime's too), scaled from the sample to all the chunks.
        "cpu_s_all_chunks": cpu * total / len(texts),
        "startup_s": startup,
    }


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (every core, every process)."""
    import psutil

    times = psutil.cpu_times()
    return sum(getattr(times, field, 0.0) for field in ("user", "nice", "system", "irq", "softirq"))


def process_cpu_seconds(pid: int | None) -> float:
    """CPU seconds of a service process: its threads, its reaped children and the live ones."""
    import psutil

    if pid is None:
        return 0.0
    process = psutil.Process(pid)
    own = process.cpu_times()
    live = sum(sum(child.cpu_times()[:2]) for child in process.children(recursive=True))
    return own.user + own.system + own.children_user + own.children_system + live


def raw_embedding_rate(env: dict[str, str]) -> dict[str, float]:
    """:func:`measure_raw` in a fresh process, so nothing loaded here helps or hinders it."""
    command = [sys.executable, __file__, "--raw-only"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_dags_test(settings, env: dict[str, str]) -> tuple[dict, float, int]:
    from genai_pipeline.local.airflow_env import airflow_bin, airflow_env
    from genai_pipeline.steps import ingest_store
    from genai_pipeline.store import Store

    started = time.perf_counter()
    subprocess.run(
        [airflow_bin(), "dags", "test", "ingest_knowledge_base"],
        env={**airflow_env(settings), **env},
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - started
    listing = subprocess.run(
        [airflow_bin(), "dags", "list-runs", "ingest_knowledge_base", "-o", "json"],
        env={**airflow_env(settings), **env},
        check=True,
        capture_output=True,
        text=True,
    )
    runs = sorted(json.loads(listing.stdout), key=lambda r: r["start_date"] or "")
    states = subprocess.run(
        [airflow_bin(), "tasks", "states-for-dag-run", "ingest_knowledge_base", runs[-1]["run_id"], "-o", "json"],
        env={**airflow_env(settings), **env},
        check=True,
        capture_output=True,
        text=True,
    )
    return Store(settings.store).read_json(ingest_store.LATEST_REPORT), wall, len(json.loads(states.stdout))


def run_scheduled(settings, api) -> tuple[dict, float, int]:
    from genai_pipeline.steps import ingest_store
    from genai_pipeline.store import Store

    started = time.perf_counter()
    run_id = api.trigger("ingest_knowledge_base")
    while True:
        run = next(r for r in api.runs("ingest_knowledge_base") if r["dag_run_id"] == run_id)
        if run["state"] in ("success", "failed"):
            break
        time.sleep(1)
    wall = time.perf_counter() - started
    if run["state"] != "success":
        raise RuntimeError(f"ingest run {run_id} failed")
    tis = api.task_instances("ingest_knowledge_base", run_id)
    if os.environ.get("BENCH_TIMELINE"):
        print_timeline(tis)
    return Store(settings.store).read_json(ingest_store.report(ingest_store.run_key_for(run_id))), wall, len(tis)


def print_timeline(tis: list[dict]) -> None:
    """Start offset and duration of every task instance: where the run's time goes."""
    from datetime import datetime

    def stamp(value: str) -> float:
        return datetime.fromisoformat(value).timestamp()

    ran = [t for t in tis if t.get("start_date")]
    origin = min(stamp(t["start_date"]) for t in ran)
    for t in sorted(ran, key=lambda t: stamp(t["start_date"])):
        start = stamp(t["start_date"]) - origin
        print(f"  {t['task_id']:>18} {t['map_index']:>3}  start {start:6.1f} s  took {t.get('duration') or 0:6.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000, help="documents to generate (ignored with --corpus)")
    parser.add_argument("--corpus", type=Path, help="ingest this folder instead of a generated corpus")
    parser.add_argument("--batch-bytes", type=int, help="PIPELINE_INGEST__BATCH_BYTES (default: the setting's)")
    parser.add_argument("--dags-test", action="store_true", help="run with `airflow dags test` (no scheduler)")
    parser.add_argument("--raw-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the first run's report as one JSON line too")
    args = parser.parse_args()
    if args.raw_only:
        print(json.dumps(measure_raw()))
        return 0

    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    corpus = args.corpus or work / "corpus"
    if not args.corpus:
        generate_corpus(corpus, args.docs)
    env = {
        **os.environ,
        "PIPELINE_HOME": str(work / "home"),
        "PIPELINE_INGEST__SOURCES": json.dumps({"bench": str(corpus)}),
        **({"PIPELINE_INGEST__BATCH_BYTES": str(args.batch_bytes)} if args.batch_bytes else {}),
        "PIPELINE_WEAVIATE__HTTP_PORT": "8179",
        "PIPELINE_WEAVIATE__GRPC_PORT": "50150",
    }
    os.environ.update(env)
    from genai_pipeline.airflow_api import AirflowAPI
    from genai_pipeline.config import get_settings
    from genai_pipeline.local.airflow_env import migrate, start_airflow, stop_airflow
    from genai_pipeline.local.services import Services
    from genai_pipeline.local.weaviate_server import start_weaviate

    settings = get_settings()
    services = Services(settings.home)
    raw = raw_embedding_rate(env)
    t0 = time.perf_counter()
    start_weaviate(settings, services)
    try:
        if args.dags_test:
            migrate(settings)
            startup = time.perf_counter() - t0
            first, first_wall, tis = run_dags_test(settings, env)
            second, _, tis2 = run_dags_test(settings, env)
        else:
            start_airflow(settings, services, api_port=8190)
            api = AirflowAPI(8190)
            while not api.dag_loaded("ingest_knowledge_base"):
                time.sleep(1)
            startup = time.perf_counter() - t0
            busy, weaviate_cpu = busy_cpu_seconds(), process_cpu_seconds(services.pid("weaviate"))
            first, first_wall, tis = run_scheduled(settings, api)
            busy = busy_cpu_seconds() - busy
            weaviate_cpu = process_cpu_seconds(services.pid("weaviate")) - weaviate_cpu
            second, _, tis2 = run_scheduled(settings, api)
    finally:
        if not args.dags_test:
            stop_airflow(services)
        services.stop("weaviate")
        shutil.rmtree(work, ignore_errors=True)

    ratio = first["chunks_per_s"] / raw["chunks_per_s"]
    lines = [
        f"mode                      {'airflow dags test' if args.dags_test else 'scheduler + LocalExecutor'}",
        f"corpus                    {first['documents']} docs, {first['chunks']} chunks, "
        f"{settings.chunking.size_tokens}-token chunks, batches of {settings.ingest.batch_bytes:,} bytes",
        f"one-time start-up         {startup:.1f} s (Weaviate + Airflow), model load {raw['startup_s']:.1f} s",
        f"raw embedding             {raw['chunks_per_s']:.1f} chunks/s "
        f"({raw['embedded']} of the {raw['chunks']} chunks in {raw['seconds']:.1f} s)",
        f"end to end (plan→report)  {first['chunks_per_s']:.1f} chunks/s, {first['docs_per_s']:.1f} docs/s "
        f"in {first['seconds']:.1f} s (DAG run wall {first_wall:.1f} s)",
        f"ratio end-to-end / raw    {ratio:.2f}",
        f"task instances            {tis} for {first['batches']} batches",
        f"longest batch vs mean     {first['longest_batch_seconds']:.1f} s vs {first['mean_batch_seconds']:.1f} s "
        f"(chunk+embed+load; {first['longest_batch_seconds'] / max(first['mean_batch_seconds'], 1e-9):.2f}x)",
        f"decoded / rejected        {len(first['decoded'])} legacy-encoded, {len(first['rejected'])} rejected",
        "time by step              "
        + ", ".join(f"{step} {seconds:.0f} s" for step, seconds in first["step_seconds"].items()),
        f"re-run (unchanged)        {second['embed_calls']} embedding calls, {second['ingested']} ingested, "
        f"{second['seconds']:.1f} s, {tis2} task instances",
    ]
    if not args.dags_test:
        cores = os.cpu_count() or 1
        raw_all = first["chunks"] / raw["chunks_per_s"]  # the raw embedder's wall time for all the chunks
        floor = busy / cores
        lines += [
            f"CPU, first run            {busy:.0f} s busy over {first_wall:.0f} s wall on {cores} cores "
            f"({busy / (first_wall * cores):.0%} used): Weaviate {weaviate_cpu:.0f} s, the rest (Airflow, step tasks, "
            f"anything else) {busy - weaviate_cpu:.0f} s",
            f"CPU, raw embedding        {raw['cpu_s_all_chunks']:.0f} s for all {first['chunks']} chunks "
            f"({raw_all:.0f} s wall): the run spends {busy - raw['cpu_s_all_chunks']:.0f} s more",
            f"CPU-bound ceiling         {floor:.0f} s at the least ({busy:.0f} CPU s / {cores} cores) → ratio ≤ "
            f"{raw_all / max(floor, raw_all):.2f}",
        ]
    print("\n".join(lines))
    if args.json:
        print(json.dumps({**first, "raw_chunks_per_s": raw["chunks_per_s"], "task_instances": tis}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
