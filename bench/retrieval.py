"""Retrieval and answer quality of the generation path on the shipped knowledge base.

    uv run python bench/retrieval.py [--answers 8] [--alpha A]
    uv run python bench/retrieval.py --home .pipeline                  # also the champion of that home, if any
    uv run python bench/retrieval.py --home DIR --champion ft:SmolLM2-135M-Instruct:...   # a given fine-tuned model

Starts a real Weaviate and the local model server in a temporary home on free ports, ingests the sample
knowledge base in-process with the ingestion steps (default settings: source ``pipeline-docs``), then asks
every question of ``src/genai_pipeline/examples/retrieval_eval.jsonl`` through the pipeline's own
``retrieve`` (one chunk per source, the configured distance threshold and hybrid alpha) at k = 1, 3, 5, 10.

- recall@k: the expected sources found in the top k / the expected sources, averaged over the questions;
- hit@k: the share of questions with at least one expected source in the top k;
- MRR@k: the mean of 1 / rank of the first expected source in the top k (0 when none is there).

Then fact coverage of the answers: ``write_post`` (retrieval + prompt + chat, greedy) for ``--answers``
questions spread evenly over the set, with the base model and, when available, a champion: ``--champion`` or,
with ``--home``, the champion recorded in that home's store. Fine-tuned models are served from
``<home>/model-server`` read-only (job records copied, checkpoints linked). Fact coverage is the share of
questions whose answer holds every fact (case-insensitive, the champion/challenger step's ``covers``); fact
recall is the share of all facts found. ``BENCH_KEEP=1`` keeps the temporary home (server logs) afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processes import free_port

EVAL_FILE = Path(__file__).resolve().parents[1] / "src" / "genai_pipeline" / "examples" / "retrieval_eval.jsonl"
BASE_MODEL = "SmolLM2-135M-Instruct"
KS = (1, 3, 5, 10)


@dataclass(frozen=True)
class EvalItem:
    """One question, the source URIs that answer it, and the facts a good answer states."""

    question: str
    sources: tuple[str, ...]
    facts: tuple[str, ...]


def load_eval(path: Path = EVAL_FILE) -> list[EvalItem]:
    """The evaluation set, one JSON object per line."""
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            items.append(EvalItem(record["question"], tuple(record["sources"]), tuple(record["facts"])))
    return items


def spread(count: int, total: int) -> list[int]:
    """``count`` indices spread evenly over ``range(total)``, so a subset still covers every document."""
    count = max(0, min(count, total))
    return [i * total // count for i in range(count)]


def served_state(home: Path, state: Path) -> None:
    """A model-server state dir serving ``home``'s fine-tuned models without writing to ``home``.

    A model server recovers jobs it finds running (marks them failed): the copy keeps that away from a home
    whose own server may be training right now. Only succeeded jobs are copied; checkpoints are linked.
    """
    source = home / "model-server"
    (state / "jobs").mkdir(parents=True)
    for path in (source / "jobs").glob("ftjob-*.json"):
        if json.loads(path.read_text()).get("status") == "succeeded":
            shutil.copy(path, state / "jobs" / path.name)
    if (source / "models").is_dir():
        (state / "models").symlink_to((source / "models").resolve(), target_is_directory=True)


def home_champion(home: Path) -> str | None:
    """The champion recorded in ``home``'s store (the default store location), if any."""
    from genai_pipeline.steps import finetune_store as layout
    from genai_pipeline.store import Store

    store = Store(str(home / "store"))
    return store.read_json(layout.CHAMPION)["model"] if store.exists(layout.CHAMPION) else None


@contextmanager
def pipeline(
    home: Path | None = None, sources: dict[str, str] | None = None
) -> Iterator[tuple[Any, dict[str, Any], float]]:
    """Weaviate and the model server in a temporary home, ``sources`` (default: the sample knowledge base) ingested.

    Yields the settings, the ingestion summary and the start-up seconds (servers and ingestion).
    """
    work = Path(tempfile.mkdtemp(prefix="bench-retrieval-"))
    env = {
        "PIPELINE_HOME": str(work / "home"),
        "PIPELINE_WEAVIATE__HTTP_PORT": str(free_port()),
        "PIPELINE_WEAVIATE__GRPC_PORT": str(free_port()),
        "PIPELINE_MODEL_SERVER__PORT": str(free_port()),
        "HF_HUB_OFFLINE": "1",
    }
    if sources is not None:
        env["PIPELINE_INGEST__SOURCES"] = json.dumps(sources)
    if home is not None:
        served_state(home, work / "model-server")
        env["PIPELINE_MODEL_SERVER__STATE_DIR"] = str(work / "model-server")
    os.environ.update(env)
    from genai_pipeline.config import get_settings
    from genai_pipeline.local.model_server import start_model_server
    from genai_pipeline.local.services import Services
    from genai_pipeline.local.weaviate_server import start_weaviate
    from genai_pipeline.steps.registry import run_step

    get_settings.cache_clear()
    settings = get_settings()
    services = Services(settings.home)
    started = time.perf_counter()
    try:
        start_weaviate(settings, services)
        start_model_server(settings, services)
        run_step("create_schema", {})
        for batch in run_step("plan", {"run_id": "bench"}):
            run_step("load", run_step("embed", run_step("chunk", batch)))
        run_step("prune", {"run_id": "bench"})
        summary = run_step("report", {"run_id": "bench"})
        yield settings, summary, time.perf_counter() - started
    finally:
        services.stop("model-server")
        services.stop("weaviate")
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {work} (server logs under home/logs)", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def chance(k: int, total: int, expected: int) -> tuple[float, float, float]:
    """Recall, hit and MRR at k of a ranking that lists the ``total`` documents in random order."""
    k = min(k, total)
    recall = k / total
    miss_all, reciprocal = 1.0, 0.0
    for rank in range(1, k + 1):  # P(first expected at rank) = P(none before) * expected / (documents left)
        first = miss_all * expected / (total - rank + 1)
        reciprocal += first / rank
        miss_all -= first
    return recall, 1 - miss_all, reciprocal


def short(uri: str) -> str:
    """A source URI without its source name."""
    return uri.split("/", 1)[-1]


def retrieval_scores(settings: Any, items: list[EvalItem], alpha: float | None) -> tuple[dict[int, dict], dict]:
    """Recall, hit rate and MRR at every k of ``KS``, and the ranked source URIs per question at every k."""
    from genai_pipeline.clients.context import service_context
    from genai_pipeline.steps.generation import retrieve

    threshold, services = settings.generation.distance_threshold, service_context(settings)
    ranked = {
        k: [[s.uri for s in retrieve(services, i.question, k=k, threshold=threshold, alpha=alpha)] for i in items]
        for k in KS
    }
    scores = {}
    for k in KS:
        recall, hit, reciprocal = [], [], []
        for item, uris in zip(items, ranked[k], strict=True):
            found = [uri for uri in uris if uri in item.sources]
            recall.append(len(found) / len(item.sources))
            hit.append(bool(found))
            first = next((rank for rank, uri in enumerate(uris, start=1) if uri in item.sources), None)
            reciprocal.append(1 / first if first else 0.0)
        scores[k] = {
            "recall": statistics.mean(recall),
            "hit": statistics.mean(hit),
            "mrr": statistics.mean(reciprocal),
            "returned": statistics.mean(len(uris) for uris in ranked[k]),
        }
    return scores, ranked


def answer_scores(settings: Any, items: list[EvalItem], model: str, alpha: float | None) -> dict[str, Any]:
    """``write_post`` for every item with ``model``; fact coverage, fact recall, tokens and seconds."""
    from genai_pipeline.clients.context import service_context
    from genai_pipeline.steps.champion import covers
    from genai_pipeline.steps.generation import GenerationError, write_post

    gen, services = settings.generation, service_context(settings)
    # The server loads a model on first use: load it before any post is timed.
    services.openai.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=1)
    covered, facts_found, facts_total, tokens, seconds, failed, answers = 0, 0, 0, [], [], 0, []
    for item in items:
        try:
            result = write_post(
                services, item.question, k=gen.k, threshold=gen.distance_threshold, alpha=alpha, model=model
            )
        except GenerationError:
            failed += 1
            facts_total += len(item.facts)
            answers.append((item, list(item.facts), "(no source within the distance threshold)"))
            continue
        post = result["post"]
        lowered = post.lower()
        found = [f for f in item.facts if f.lower() in lowered]
        covered += covers(post, item.facts)
        facts_found += len(found)
        facts_total += len(item.facts)
        tokens.append(result["usage"]["completion_tokens"])
        seconds.append(result["seconds"])
        answers.append((item, [f for f in item.facts if f not in found], post))
    return {
        "model": model,
        "questions": len(items),
        "coverage": covered / len(items),
        "covered": covered,
        "fact_recall": facts_found / facts_total,
        "tokens": statistics.mean(tokens) if tokens else 0.0,
        "seconds": statistics.mean(seconds) if seconds else 0.0,
        "failed": failed,
        "answers": answers,
    }


def available_models(settings: Any) -> set[str]:
    """Model ids the model server lists."""
    from genai_pipeline.clients.openai_compat import make_openai_client

    return {m.id for m in make_openai_client(settings).models.list().data}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=8, help="questions that get a generated answer (~20 s each)")
    parser.add_argument("--champion", help="a fine-tuned model id the model server serves (needs --home)")
    parser.add_argument("--home", type=Path, help="a pipeline home whose model-server state has fine-tuned models")
    parser.add_argument("--show-answers", action="store_true", help="print each answer's missing facts and text")
    parser.add_argument("--alpha", type=float, help="hybrid alpha (default: PIPELINE_GENERATION__HYBRID_ALPHA)")
    args = parser.parse_args()
    items = load_eval()
    champion = args.champion or (home_champion(args.home) if args.home else None)

    with pipeline(args.home) as (settings, summary, startup):
        alpha = args.alpha if args.alpha is not None else settings.generation.hybrid_alpha
        started = time.perf_counter()
        scores, ranked = retrieval_scores(settings, items, alpha)
        retrieval_seconds = time.perf_counter() - started
        chosen = [items[i] for i in spread(args.answers, len(items))]
        models = [BASE_MODEL]
        note = ""
        if champion:
            if champion in available_models(settings):
                models.append(champion)
            else:
                note = f"champion {champion} is not served by the model server (no such fine-tuned model): skipped"
        answers = [answer_scores(settings, chosen, model, alpha) for model in models] if chosen else []

    gen = settings.generation
    print(
        f"knowledge base: {summary['documents']} documents, {summary['chunks']} chunks "
        f"({settings.chunking.size_tokens}-token chunks, {settings.embedding.model}); start-up + ingest {startup:.1f} s"
    )
    print(
        f"eval set: {len(items)} questions, {sum(len(i.sources) for i in items)} expected sources, "
        f"{sum(len(i.facts) for i in items)} facts; retrieve: one chunk per source, distance <= "
        f"{gen.distance_threshold}, {'vector search' if alpha is None else f'hybrid alpha {alpha}'}; "
        f"{len(items) * len(KS)} queries in {retrieval_seconds:.1f} s"
    )
    print()
    documents = summary["documents"]
    print(
        f"{'k':>4}{'recall@k':>10}{'hit@k':>8}{'MRR@k':>8}{'returned':>10}   "
        f"{'chance: recall@k':>17}{'hit@k':>8}{'MRR@k':>8}"
    )
    for k in KS:
        s = scores[k]
        base = [chance(k, documents, len(i.sources)) for i in items]
        recall, hit, mrr = (statistics.mean(b[n] for b in base) for n in range(3))
        default = "  default k" if k == gen.k else ""
        print(
            f"{k:>4}{s['recall']:>10.3f}{s['hit']:>8.3f}{s['mrr']:>8.3f}{s['returned']:>10.1f}   "
            f"{recall:>17.3f}{hit:>8.3f}{mrr:>8.3f}{default}"
        )
    print(
        f"returned: sources retrieve gave (mean); chance: the {documents} documents ranked in random order "
        "(what k alone explains on a knowledge base this small)"
    )
    at_k = ranked[gen.k] if gen.k in ranked else ranked[max(KS)][: gen.k]
    misses = [(i, uris) for i, uris in zip(items, at_k, strict=True) if not set(i.sources) <= set(uris)]
    if misses:
        print(f"\nexpected sources not in the top {gen.k} (rank at k={max(KS)}, - = not returned):")
        for item, uris in misses:
            everything = ranked[max(KS)][items.index(item)]
            where = ", ".join(
                f"{short(uri)}@{everything.index(uri) + 1 if uri in everything else '-'}"
                for uri in item.sources
                if uri not in uris
            )
            print(f"  {item.question[:64]:64}  {where}")
    if answers:
        print(
            f"\nanswers: write_post on {len(chosen)} of {len(items)} questions (spread over the set), k={gen.k}, "
            f"temperature {gen.temperature:g}, max {gen.max_tokens} tokens"
        )
        labels = [a["model"] + (" (base)" if a["model"] == BASE_MODEL else " (champion)") for a in answers]
        width = max(len(label) for label in labels) + 2
        print(f"{'model':{width}}{'fact coverage':>14}{'fact recall':>13}{'tokens':>8}{'s/post':>8}")
        for label, a in zip(labels, answers, strict=True):
            coverage = f"{a['covered']}/{a['questions']} {a['coverage']:.2f}"
            print(f"{label:{width}}{coverage:>14}{a['fact_recall']:>13.2f}{a['tokens']:>8.0f}{a['seconds']:>8.1f}")
            if a["failed"]:
                print(f"  {a['failed']} questions had no source within the threshold (counted as misses)")
            if args.show_answers:
                for item, lost, post in a["answers"]:
                    print(f"  [{'hit' if not lost else 'miss ' + ', '.join(lost)}] {item.question}")
                    print(f"      {' '.join(post.split())[:400]}")
    print(f"load average at the end (1/5/15 min): {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if note:
        print(note)
    elif not champion:
        print("no champion model given or recorded (--champion / --home): base model only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
