"""Generation latency: a post through the step's code path vs the same chat request sent straight to the server.

    uv run python bench/generate.py [--topics 5]

Starts Weaviate and the local model server in a temporary home on free ports and ingests the sample
knowledge base in-process (as ``bench/retrieval.py`` does). For N topics (questions of the retrieval eval
set, spread over it) it times

- the step: ``write_post`` (retrieval, prompt, chat completion with SmolLM2-135M-Instruct, the configured k,
  temperature and max tokens), wall time around the call;
- the model alone: the same messages (the same retrieved sources through ``build_messages``) sent with
  ``client.chat.completions.create``, timed around that call only; the retrieval is timed on its own.

One untimed warm-up of each first (the server loads the model on first use); the order of the two alternates
per topic. Prints latency p50/mean per post, completion tokens/s (total tokens / total seconds) of each, and
the step's overhead over the bare request.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from retrieval import BASE_MODEL, load_eval, pipeline, spread  # the same servers, ingestion and questions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", type=int, default=5, help="topics timed (each runs twice, ~20 s per run)")
    parser.add_argument("--model", default=BASE_MODEL, help="chat model the model server serves")
    args = parser.parse_args()
    items = load_eval()
    topics = [items[i].question for i in spread(args.topics, len(items))]

    with pipeline() as (settings, summary, startup):
        from genai_pipeline.clients.openai_compat import make_openai_client
        from genai_pipeline.steps.generation import build_messages, retrieve, write_post

        gen = settings.generation
        client = make_openai_client(settings)

        def step(topic: str) -> tuple[float, int, int, str]:
            started = time.perf_counter()
            result = write_post(
                settings,
                topic,
                k=gen.k,
                threshold=gen.distance_threshold,
                alpha=gen.hybrid_alpha,
                model=args.model,
            )
            usage = result["usage"]
            return time.perf_counter() - started, usage["completion_tokens"], usage["prompt_tokens"], result["post"]

        def direct(topic: str) -> tuple[float, float, int, str]:
            started = time.perf_counter()
            sources = retrieve(settings, topic, k=gen.k, threshold=gen.distance_threshold, alpha=gen.hybrid_alpha)
            retrieval = time.perf_counter() - started
            messages = build_messages(settings.fine_tune.system_prompt, gen.group, topic, sources)
            started = time.perf_counter()
            reply = client.chat.completions.create(
                model=args.model, messages=messages, temperature=gen.temperature, max_tokens=gen.max_tokens
            )
            seconds = time.perf_counter() - started
            return seconds, retrieval, reply.usage.completion_tokens, (reply.choices[0].message.content or "").strip()

        step(topics[0])
        direct(topics[0])
        steps, directs = [], []
        for n, topic in enumerate(topics):
            if n % 2:
                directs.append(direct(topic))
                steps.append(step(topic))
            else:
                steps.append(step(topic))
                directs.append(direct(topic))

    step_s, step_tokens = [s[0] for s in steps], [s[1] for s in steps]
    chat_s, retrieval_s, chat_tokens = [d[0] for d in directs], [d[1] for d in directs], [d[2] for d in directs]
    same = sum(s[3] == d[3] for s, d in zip(steps, directs, strict=True))
    print(
        f"{len(topics)} topics, {args.model}, k={gen.k}, temperature {gen.temperature:g}, max {gen.max_tokens} tokens; "
        f"prompt {statistics.mean(s[2] for s in steps):.0f} tokens on average; start-up + ingest {startup:.1f} s "
        f"({summary['chunks']} chunks)"
    )
    print(f"{'':38}{'p50 s':>8}{'mean s':>8}{'completion tokens':>19}{'tokens/s':>10}")
    rows = [
        ("write_post (retrieve + prompt + chat)", step_s, step_tokens),
        ("chat request alone, same messages", chat_s, chat_tokens),
    ]
    for label, seconds, tokens in rows:
        print(
            f"{label:38}{statistics.median(seconds):>8.2f}{statistics.mean(seconds):>8.2f}"
            f"{sum(tokens):>19}{sum(tokens) / sum(seconds):>10.2f}"
        )
    overhead = statistics.mean(step_s) - statistics.mean(chat_s)
    print(
        f"step / direct tokens/s: {(sum(step_tokens) / sum(step_s)) / (sum(chat_tokens) / sum(chat_s)):.2f}; "
        f"step overhead {overhead:.2f} s per post (retrieval alone {statistics.mean(retrieval_s):.2f} s mean); "
        f"identical posts {same}/{len(topics)}"
    )
    print(f"per post, step: {' '.join(f'{x:.1f}' for x in step_s)} s; alone: {' '.join(f'{x:.1f}' for x in chat_s)} s")
    print(f"load average at the end (1/5/15 min): {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
