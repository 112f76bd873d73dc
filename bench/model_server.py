"""Model-server benchmark: the same models in-process and behind the OpenAI-compatible API.

    uv run python bench/model_server.py

Prints embeddings/s (256-token chunks and short sentences), chat tokens/s (greedy), the server/in-process
ratio of each, and fine-tune steps/s of a real job.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import sentence  # the same generated text as the ingestion benchmark

CHAT_PROMPT = [{"role": "user", "content": "Explain step by step how a data pipeline loads documents into a database."}]


def texts(count: int, sentences: int) -> list[str]:
    import random

    rng = random.Random(11)
    return [" ".join(sentence(rng) for _ in range(sentences)) for _ in range(count)]


def rate(call, items: int, repeat: int = 1) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        call()
    return items * repeat / (time.perf_counter() - started)


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="bench-model-server-"))
    os.environ.update({"PIPELINE_HOME": str(home), "PIPELINE_MODEL_SERVER__PORT": "8199", "HF_HUB_OFFLINE": "1"})
    import openai

    from genai_pipeline.config import get_settings
    from genai_pipeline.local.model_server import start_model_server
    from genai_pipeline.local.services import Services
    from genai_pipeline.models.chat import BASE_CHAT_MODEL, ChatModel, base_checkpoint
    from genai_pipeline.models.embeddings import make_embedder

    settings = get_settings()
    services = Services(home)
    chunks, short = texts(256, 14), texts(512, 1)  # ~256 tokens each; one sentence each
    embedder = make_embedder(settings)
    embedder.embed(["warm up"])
    local = {
        "chunks": rate(lambda: embedder.embed(chunks), len(chunks)),
        "short": rate(lambda: embedder.embed(short), len(short)),
    }
    chat = ChatModel(base_checkpoint(settings.cache_dir))
    reply = chat.complete(chat.prompt_ids(CHAT_PROMPT), max_tokens=96)
    started = time.perf_counter()
    reply = chat.complete(chat.prompt_ids(CHAT_PROMPT), max_tokens=96)
    local["chat"] = reply.completion_tokens / (time.perf_counter() - started)
    del chat

    start_model_server(settings, services)
    try:
        client = openai.OpenAI(base_url=settings.model_server.base_url, api_key="unused", timeout=300)
        model = "all-MiniLM-L6-v2"
        client.embeddings.create(model=model, input="warm up")

        def served(batch: list[str]):
            return lambda: [
                client.embeddings.create(model=model, input=batch[i : i + 64]) for i in range(0, len(batch), 64)
            ]

        remote = {"chunks": rate(served(chunks), len(chunks)), "short": rate(served(short), len(short))}
        client.chat.completions.create(model=BASE_CHAT_MODEL, messages=CHAT_PROMPT, temperature=0, max_tokens=96)
        started = time.perf_counter()
        answer = client.chat.completions.create(
            model=BASE_CHAT_MODEL, messages=CHAT_PROMPT, temperature=0, max_tokens=96
        )
        remote["chat"] = answer.usage.completion_tokens / (time.perf_counter() - started)

        examples = [
            {"messages": [{"role": "user", "content": s}, {"role": "assistant", "content": s[::-1]}]}
            for s in texts(10, 2)
        ]
        upload = client.files.create(
            file=("train.jsonl", "".join(json.dumps(e) + "\n" for e in examples).encode()), purpose="fine-tune"
        )
        job = client.fine_tuning.jobs.create(
            model=BASE_CHAT_MODEL, training_file=upload.id, hyperparameters={"n_epochs": 2, "batch_size": 2}
        )
        while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.5)
        events = client.fine_tuning.jobs.list_events(job.id, limit=200).data
        metrics = sorted((e for e in events if e.type == "metrics"), key=lambda e: e.data["step"])
        train_seconds = max(metrics[-1].created_at - metrics[0].created_at, 1)
        steps_per_s = (len(metrics) - 1) / train_seconds
        job_seconds = job.finished_at - job.created_at
    finally:
        services.stop("model-server")
        shutil.rmtree(home, ignore_errors=True)

    print(f"{'':28}{'in-process':>12}{'server':>10}{'ratio':>8}")
    for key, label in (
        ("chunks", "embeddings/s (256-token)"),
        ("short", "embeddings/s (sentence)"),
        ("chat", "chat tokens/s (greedy)"),
    ):
        print(f"{label:28}{local[key]:>12.1f}{remote[key]:>10.1f}{remote[key] / local[key]:>8.2f}")
    print(
        f"fine-tune: {job.status}, {len(metrics)} steps (batch 2, 10 examples x 2 epochs), "
        f"{steps_per_s:.2f} steps/s while training, job {job_seconds} s end to end incl. load and save"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
