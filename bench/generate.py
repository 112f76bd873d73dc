"""Posts on a real corpus: retrieval, groundedness, citations, repetition, fact coverage and speed, gate on and off.

    uv run python bench/django_docs.py DIR                          # the corpus, once (PyPI sdist, SHA-256 pinned)
    uv run python bench/generate.py --corpus DIR [--home .pipeline] [--topics 36] [--penalties 0,0.5,1]

Starts Weaviate and the local model server in a temporary home on free ports and ingests DIR (Django's docs,
source ``django-docs``) with the ingestion steps. Questions and the documents that answer them come from
``bench/django_eval.jsonl`` (checked by hand; the script also checks every fact is in one of its sources).

Retrieval: recall@k and MRR@k of the pipeline's own ``retrieve`` at k = 1, 3, 5, 10.

Posts: every topic is written once per model and frequency penalty through ``write_post`` with the gate off
(the base model; the champion of ``--home``'s store when it has one), then the gate reads that same post, so
"gate off" and "gate on" compare one text. Per row:

- published: posts the reader gets (gate off: all of them; gate on: those not sent to review);
- supported: sentences whose citation names a source whose chunk supports them (the gate's measure: MiniLM
  similarity at the configured threshold, and no code term the chunk lacks), of the published sentences;
- cited: published sentences with at least one valid ``[n]``;
- word support: the share of a sentence's content words found in the chunk it cites (a check that does not
  use the gate's embedder), mean over cited sentences;
- repeated: sentences of a published post equal to, or rewording (the gate's word overlap), an earlier one;
- distinct-2: distinct word bigrams / bigrams of the published text;
- facts: questions whose published post states every expected fact (a post sent to review answers nothing);
- s/post: generation (gate on: plus the gate).

Goals (issue 23) with the default model, gate on: 0 repeated sentences, >= 90 % of published sentences
supported and cited, <= 25 % of posts sent to review. ``BENCH_KEEP=1`` keeps the temporary home.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from retrieval import BASE_MODEL, KS, available_models, home_champion, load_eval, pipeline, retrieval_scores, spread

EVAL = Path(__file__).resolve().parent / "django_eval.jsonl"
SOURCE = "django-docs"
CITATION = re.compile(r"\[(\d+)\]")
CONTENT_WORD = re.compile(r"[a-z][a-z0-9_]{3,}")
STOP = frozenset(
    ["that", "this", "with", "from", "have", "your", "their", "which", "when", "what", "will", "into", "then", "than"]
)


@dataclass
class Row:
    """Figures of one (model, penalty, gate) combination, summed over the topics."""

    label: str
    posts: int = 0
    published: int = 0
    sentences: int = 0
    supported: int = 0
    cited: int = 0
    word_support: list[float] = field(default_factory=list)
    repeated: int = 0
    distinct: list[float] = field(default_factory=list)
    facts: int = 0
    seconds: list[float] = field(default_factory=list)
    # Why the gate sent posts to review: each reason with its numbers masked ("N sentence(s) passed, ...").
    review: Counter[str] = field(default_factory=Counter)


def distinct_2(text: str) -> float:
    """Distinct word bigrams / word bigrams: 1.0 for text that never repeats a pair of words."""
    pairs = list(itertools.pairwise(text.lower().split()))
    return len(set(pairs)) / len(pairs) if pairs else 1.0


def content_words(text: str) -> set[str]:
    return {w for w in CONTENT_WORD.findall(CITATION.sub("", text).lower()) if w not in STOP}


def word_support(sentence: str, cites: list[int], chunks: list[str]) -> float | None:
    """Share of the sentence's content words in the chunks it cites; None when it cites none of them."""
    cited = [chunks[n - 1] for n in cites if 1 <= n <= len(chunks)]
    words = content_words(sentence)
    if not cited or not words:
        return None
    found = set().union(*(content_words(chunk) for chunk in cited))
    return len(words & found) / len(words)


def repeats(sentences: list[str], overlap: float) -> int:
    """Sentences equal to or rewording an earlier one, by the gate's own word-overlap rule."""
    from genai_pipeline.steps.post_quality import near_repeat, sentence_words

    return sum(near_repeat(s, [sentence_words(e) for e in sentences[:i]], overlap) for i, s in enumerate(sentences))


def check_facts(items: list[Any], corpus: Path) -> None:
    """Every expected fact is in one of its expected sources, or the eval set is wrong for this corpus."""
    for item in items:
        texts = [(corpus / uri.split("/", 1)[1]).read_text(encoding="utf-8").lower() for uri in item.sources]
        for fact in item.facts:
            if not any(fact.lower() in text for text in texts):
                raise SystemExit(f"eval set: {fact!r} is in none of {item.sources} ({item.question})")


def measure(
    row: Row,
    published: list[Any] | None,
    supported: list[bool],
    text: str,
    chunks: list[str],
    item: Any,
    seconds: float,
    overlap: float,
) -> None:
    """Add one post to ``row``: the sentences a reader gets (None: sent to review) and which are supported."""
    from genai_pipeline.steps.champion import covers

    row.posts += 1
    row.seconds.append(seconds)
    if published is None:
        return
    said = [s.text for s in published]
    row.published += 1
    row.sentences += len(said)
    row.supported += sum(supported)
    row.cited += sum(bool(s.citations) for s in published)
    row.repeated += repeats(said, overlap)
    row.distinct.append(distinct_2(CITATION.sub("", " ".join(said))))
    row.facts += covers(text, item.facts)
    row.word_support += [w for w in (word_support(s.text, s.citations, chunks) for s in published) if w is not None]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="Django's docs, installed by bench/django_docs.py")
    parser.add_argument("--eval", type=Path, default=EVAL)
    parser.add_argument("--home", type=Path, help="a pipeline home whose champion is measured beside the base model")
    parser.add_argument("--topics", type=int, default=0, help="topics written per model (default: every question)")
    parser.add_argument("--penalties", default="", help="frequency penalties to compare (default: the configured)")
    parser.add_argument("--show", action="store_true", help="print every post as written and as the gate left it")
    args = parser.parse_args()
    items = load_eval(args.eval)
    check_facts(items, args.corpus)
    chosen = [items[i] for i in spread(args.topics or len(items), len(items))]
    champion = home_champion(args.home) if args.home else None

    with pipeline(args.home, {SOURCE: str(args.corpus)}) as (settings, summary, startup):
        from genai_pipeline.clients.context import service_context
        from genai_pipeline.steps.generation import retrieve, write_post
        from genai_pipeline.steps.post_quality import as_written, check_post

        gen = settings.generation
        started = time.perf_counter()
        scores, _ranked = retrieval_scores(settings, items, gen.hybrid_alpha)
        retrieval_seconds = time.perf_counter() - started
        models = [BASE_MODEL] + ([champion] if champion and champion in available_models(settings) else [])
        penalties = [float(p) for p in args.penalties.split(",")] if args.penalties else [gen.frequency_penalty]
        services = service_context(settings)
        embed = services.embedder.embed
        rows: list[Row] = []
        for model, penalty in itertools.product(models, penalties):
            role = "base" if model == BASE_MODEL else "champion"
            name = f"{role}, penalty {penalty:g}"
            off, on = Row(f"{name}, gate off"), Row(f"{name}, gate on")
            raw = settings.model_copy(
                update={
                    "generation": gen.model_copy(
                        update={
                            "frequency_penalty": penalty,
                            "quality": gen.quality.model_copy(update={"enabled": False}),
                        }
                    )
                }
            )
            raw_services = service_context(raw)
            write_post(raw_services, chosen[0].question, alpha=gen.hybrid_alpha, model=model)  # loads it, untimed
            for item in chosen:
                result = write_post(raw_services, item.question, alpha=gen.hybrid_alpha, model=model)
                chunks = [
                    s.text
                    for s in retrieve(
                        services, item.question, k=gen.k, threshold=gen.distance_threshold, alpha=gen.hybrid_alpha
                    )
                ]
                began = time.perf_counter()
                verdict = check_post(result["post"], chunks, embed, gen.quality)
                gate_seconds = time.perf_counter() - began
                # Gate off: the text as written, a sentence supported when a source it cites supports it.
                written = as_written(result["post"], chunks, embed, gen.quality)
                measure(
                    off,
                    written,
                    [s.grounded for s in written],
                    result["post"],
                    chunks,
                    item,
                    result["seconds"],
                    gen.quality.repeat_overlap,
                )
                # Gate on: what it publishes, cited as published (a repaired citation counts).
                kept = [s for s in verdict.sentences if s.kept] if verdict.status == "published" else None
                on.review.update(re.sub(r"\d+", "N", reason) for reason in verdict.reasons)
                measure(
                    on,
                    kept,
                    [s.supported for s in kept or []],
                    verdict.text,
                    chunks,
                    item,
                    result["seconds"] + gate_seconds,
                    gen.quality.repeat_overlap,
                )
                if args.show:
                    print(
                        f"\n## {name}: {item.question}\n{result['post']}\n-- gate: {verdict.status} "
                        f"{'; '.join(verdict.reasons)}\n{verdict.text}"
                    )
            rows += [off, on]

    print(
        f"corpus: {summary['documents']} documents, {summary['chunks']} chunks of {args.corpus} "
        f"({settings.embedding.model}); start-up + ingest {startup:.0f} s"
    )
    print(
        f"retrieval: {len(items)} questions, {len(KS) * len(items)} queries in {retrieval_seconds:.1f} s, "
        f"{'vector search' if gen.hybrid_alpha is None else f'hybrid alpha {gen.hybrid_alpha}'}, distance <= "
        f"{gen.distance_threshold}"
    )
    print("  " + "  ".join(f"recall@{k} {scores[k]['recall']:.3f} MRR@{k} {scores[k]['mrr']:.3f}" for k in KS))
    print(
        f"\nposts: {len(chosen)} topics per row, k={gen.k}, temperature {gen.temperature:g}, max {gen.max_tokens} "
        f"tokens, support threshold {gen.quality.support_threshold}"
    )
    header = ("published", "supported", "cited", "word sup.", "repeated", "distinct-2", "facts", "s/post")
    width = max(len(r.label) for r in rows) + 2
    print(f"{'':{width}}" + "".join(f"{h:>11}" for h in header))
    for r in rows:
        cells = (
            f"{r.published}/{r.posts}",
            f"{r.supported / r.sentences:.0%}" if r.sentences else "-",
            f"{r.cited / r.sentences:.0%}" if r.sentences else "-",
            f"{statistics.mean(r.word_support):.0%}" if r.word_support else "-",
            str(r.repeated),
            f"{statistics.mean(r.distinct):.2f}" if r.distinct else "-",
            f"{r.facts}/{r.posts}",
            f"{statistics.mean(r.seconds):.1f}",
        )
        print(f"{r.label:{width}}" + "".join(f"{c:>11}" for c in cells))
    for r in rows:
        if r.review:
            print(f"{r.label}: sent to review because " + "; ".join(f"{n}x {why}" for why, n in r.review.most_common()))
    print(f"load average at the end (1/5/15 min): {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.home and not champion:
        print(f"no champion in {args.home}: base model only (make demo promotes one)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
