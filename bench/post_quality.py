"""What the quality gate makes of real posts, and which decoding penalties suit the default model.

    uv run python bench/post_quality.py [--topics 10] [--penalties 0,0.5,1.0]

Starts Weaviate and the local model server in a temporary home and ingests the sample knowledge base (as
``bench/retrieval.py`` does). For each frequency penalty, N topics (questions of the retrieval eval set, spread
over it) are written by the base model through ``write_post`` with the gate off; the gate then reads each raw
post. Per penalty it prints, over the raw posts and over what the gate publishes:

- repeated sentences (per post) and distinct-2 (share of distinct word bigrams);
- sentences that cite a real source which supports them, as written (raw) and as published (gate);
- the share of posts the gate publishes (the rest go to review);
- seconds per post (generation), and the gate's own seconds per post.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from retrieval import BASE_MODEL, load_eval, pipeline, spread  # the same servers, ingestion and questions


def distinct_2(text: str) -> float:
    words = text.lower().split()
    pairs = list(itertools.pairwise(words))
    return len(set(pairs)) / len(pairs) if pairs else 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", type=int, default=10)
    parser.add_argument("--penalties", default="0,0.5,1.0", help="frequency penalties to compare")
    parser.add_argument("--model", default=BASE_MODEL)
    args = parser.parse_args()
    items = load_eval()
    topics = [items[i].question for i in spread(args.topics, len(items))]
    penalties = [float(p) for p in args.penalties.split(",")]

    with pipeline() as (settings, _summary, _startup):
        from genai_pipeline.models.embeddings import make_embedder
        from genai_pipeline.steps.generation import retrieve, write_post
        from genai_pipeline.steps.post_quality import check_post, split_sentences

        gen = settings.generation
        embed = make_embedder(settings).embed
        rows = []
        for penalty in penalties:
            raw_settings = settings.model_copy(
                update={
                    "generation": gen.model_copy(
                        update={
                            "frequency_penalty": penalty,
                            "quality": gen.quality.model_copy(update={"enabled": False}),
                        }
                    )
                }
            )
            figures = []
            for topic in topics:
                started = time.perf_counter()
                result = write_post(raw_settings, topic, alpha=gen.hybrid_alpha, model=args.model)
                seconds = time.perf_counter() - started
                sources = retrieve(settings, topic, k=gen.k, threshold=gen.distance_threshold, alpha=gen.hybrid_alpha)
                started = time.perf_counter()
                gate = check_post(result["post"], [s.text for s in sources], embed, gen.quality)
                gate_seconds = time.perf_counter() - started
                said = split_sentences(result["post"])
                published = [s for s in gate.sentences if s.kept]
                figures.append(
                    {
                        "raw_repeated": len(said) - len({" ".join(s.lower().split()) for s in said}),
                        "raw_distinct2": distinct_2(result["post"]),
                        # As written: cited, the citation supports it, nothing cut or repaired.
                        "raw_sound": sum(not s.flags for s in gate.sentences) / max(1, len(gate.sentences)),
                        "gate_repeated": len(published) - len({" ".join(s.text.lower().split()) for s in published}),
                        "gate_distinct2": distinct_2(gate.text),
                        "gate_supported": sum(s.supported for s in published) / max(1, len(published)),
                        "published": gate.status == "published",
                        "seconds": seconds,
                        "gate_seconds": gate_seconds,
                    }
                )
            rows.append((penalty, figures))

    print(
        f"{len(topics)} topics, {args.model}, k={settings.generation.k}, greedy, max {gen.max_tokens} tokens, gate "
        f"threshold {gen.quality.support_threshold}"
    )
    header = (
        "frequency penalty",
        "raw: repeated/post",
        "raw: distinct-2",
        "raw: cited and supported",
        "gate: repeated/post",
        "gate: supported",
        "published",
        "s/post",
        "gate s/post",
    )
    print(" | ".join(header))
    for penalty, figures in rows:
        means = {key: statistics.mean(float(f[key]) for f in figures) for key in figures[0]}
        cells = [f"{penalty:g}", f"{means['raw_repeated']:.2f}", f"{means['raw_distinct2']:.2f}"]
        cells += [f"{means['raw_sound']:.0%}", f"{means['gate_repeated']:.2f}", f"{means['gate_supported']:.0%}"]
        cells += [f"{means['published']:.0%}", f"{means['seconds']:.1f}", f"{means['gate_seconds']:.2f}"]
        print(" | ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
