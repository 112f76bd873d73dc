"""Peak memory of each ingestion step on documents at the size cap, against the step's memory limit.

    uv run python bench/memory.py                 # 200 documents of 2 MB
    uv run python bench/memory.py --docs 40 --json

Each step runs as its image runs it (``python -m genai_pipeline.runner <step> '<descriptor>'``) in a fresh
process against a real Weaviate; its peak RSS comes from ``wait4``. ``plan`` reads all documents; chunk,
embed and load run on the first batch of the default plan (one 2 MB document: batches are cut by bytes) and
on a batch four times bigger (only that batch runs: no report), to show a step's peak follows the
sub-batch, not the batch.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from genai_pipeline.synthetic_corpus import WORDS


def write_large_documents(root: Path, docs: int, size: int, seed: int = 11) -> None:
    """Markdown documents of ``size`` bytes: many sections of prose, like a long manual or changelog."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for index in range(docs):
        parts, length, section = [f"# Manual {index}\n"], 0, 0
        while length < size:
            if section % 12 == 0:
                parts.append(f"\n## Chapter {section // 12}\n")
            parts.append(f"\n### Topic {section}\n\n")
            for _ in range(rng.randint(3, 6)):
                words = [rng.choice(WORDS) for _ in range(rng.randint(40, 90))]
                parts.append(" ".join(words).capitalize() + ".\n\n")
            section += 1
            length = sum(len(p) for p in parts)
        (root / f"manual-{index:04d}.md").write_text("".join(parts)[:size])


def run_step(step: str, payload: dict, env: dict[str, str]) -> tuple[object, float]:
    """Run one step in a fresh process; returns its JSON result and its peak RSS in MiB."""
    process = subprocess.Popen(
        [sys.executable, "-m", "genai_pipeline.runner", step, json.dumps(payload)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"{step} exited {process.returncode}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def mebibytes(quantity: str) -> float:
    """A Kubernetes memory quantity (512Mi, 1Gi, 2G) in MiB."""
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    for unit, factor in units.items():
        if quantity.endswith(unit):
            return float(quantity[: -len(unit)]) * factor
    return float(quantity) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--doc-bytes", type=int, default=1_990_000, help="just under the 2 MB document cap")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    write_large_documents(work / "corpus", args.docs, args.doc_bytes)
    env = {
        **os.environ,
        "PIPELINE_HOME": str(work / "home"),
        "PIPELINE_INGEST__SOURCES": json.dumps({"manuals": str(work / "corpus")}),
        "PIPELINE_WEAVIATE__HTTP_PORT": "8279",
        "PIPELINE_WEAVIATE__GRPC_PORT": "50250",
        "PIPELINE_WEAVIATE__COLLECTION": "MemoryBench",
    }
    os.environ.update(env)
    from genai_pipeline.config import get_settings
    from genai_pipeline.local.services import Services
    from genai_pipeline.local.weaviate_server import start_weaviate

    settings = get_settings()
    services = Services(settings.home)
    start_weaviate(settings, services)
    rows: list[dict[str, object]] = []
    try:
        run_step("create_schema", {}, env)
        for label, batch_bytes in (("1 x 2 MB", settings.ingest.batch_bytes), ("4 x 2 MB", 4 * args.doc_bytes)):
            step_env = {**env, "PIPELINE_INGEST__BATCH_BYTES": str(batch_bytes)}
            batches, peak = run_step("plan", {"run_id": f"bench-{batch_bytes}"}, step_env)
            rows.append({"step": "plan", "batch": f"all {args.docs} docs", "peak_mib": peak})
            result: object = batches[0]
            for step in ("chunk", "embed", "load"):
                result, peak = run_step(step, result, step_env)
                rows.append({"step": step, "batch": f"{label} ({result['chunks']} chunks)", "peak_mib": peak})
    finally:
        services.stop("weaviate")
        shutil.rmtree(work, ignore_errors=True)

    for row in rows:
        limit = settings.runtime.resources.get(str(row["step"]), settings.runtime.resources["chunk"]).memory_limit
        row["limit_mib"] = mebibytes(limit)
        row["peak_mib"] = round(float(row["peak_mib"]), 1)
    if args.json:
        print(json.dumps({"docs": args.docs, "doc_bytes": args.doc_bytes, "steps": rows}))
        return 0
    print(f"{args.docs} documents of {args.doc_bytes:,} bytes; sub-batch {settings.ingest.sub_batch_chunks} chunks")
    for row in rows:
        share = float(row["peak_mib"]) / float(row["limit_mib"])
        print(
            f"  {row['step']:>6}  {row['batch']:<28} peak {row['peak_mib']:7.1f} MiB  "
            f"of {row['limit_mib']:.0f} MiB limit ({share:.0%})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
