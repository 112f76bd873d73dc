"""Base chat model size: one-time conversion, memory and speed of the model server on post-shaped prompts.

    uv run python bench/model_size.py --corpus DIR [--gguf FILE] [--posts 3]

Starts the model server (``pipeline serve-models``) in a temporary home and cache on a free port, with
``PIPELINE_MODEL_SERVER__CHAT_MODEL_GGUF=FILE`` when ``--gguf`` is given (else the packaged SmolLM2-135M), and
measures:

- conversion: the server de-quantises the GGUF into the cache once, in a child process, right after it starts;
  its seconds (child started to checkpoint written), its peak RSS (VmHWM, sampled every 0.25 s) and the
  checkpoint's size on disk;
- load: the first chat request, which loads the checkpoint (max_tokens 1);
- posts: ``--posts`` requests shaped like ``write_post``'s (``build_messages`` with the generation settings:
  greedy, max_tokens 256, frequency penalty 0.5) for the first questions of ``bench/django_eval.jsonl``, each
  with 5 sources of ~150 words cut from the files that answer it (windows naming an expected fact first):
  seconds per post and completion tokens per second, prefill included;
- the server's peak RSS (VmHWM) after the posts;
- fine-tune memory: parameters (``training.parameter_count``), a full fine-tune's 16 bytes per parameter, LoRA's
  4 bytes per frozen parameter plus 16 per adapter parameter (rank from the settings, every linear layer but
  the output head), and which one the server's ``auto`` would pick on this machine.

DIR is the corpus ``bench/django_docs.py`` writes. Prints a markdown table and the first post.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from processes import free_port, status_bytes

BENCH = Path(__file__).resolve().parent
WORDS_PER_SOURCE = 150
SOURCES_PER_POST = 5


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


class ChildWatch:
    """Samples the server's descendants: when the first started (epoch seconds) and the highest VmHWM any reached."""

    def __init__(self, pid: int) -> None:
        self.pid, self.first_seen, self.peak = pid, None, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.25):
            try:
                children = psutil.Process(self.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                return
            for child in children:
                try:
                    created = child.create_time()
                except psutil.NoSuchProcess:
                    continue
                self.first_seen = min(self.first_seen or created, created)
                self.peak = max(self.peak, status_bytes(child.pid, "VmHWM"))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def post_prompts(corpus: Path, count: int) -> list[tuple[str, list]]:
    """(question, sources) for the first ``count`` questions of the Django evaluation set."""
    from genai_pipeline.steps.prompt import Source

    prompts = []
    for line in (BENCH / "django_eval.jsonl").read_text().splitlines()[:count]:
        item = json.loads(line)
        windows = []
        for name in item["sources"]:
            path = corpus / name.removeprefix("django-docs/")
            lines: list[str] = []
            for line in [*path.read_text().splitlines(), None]:  # whole lines up to ~150 words per source
                if line is not None:
                    lines.append(line)
                if lines and (line is None or sum(len(kept.split()) for kept in lines) >= WORDS_PER_SOURCE):
                    text = "\n".join(lines).strip()
                    windows.append((not any(fact in text for fact in item["facts"]), len(windows), name, text))
                    lines = []
        chosen = sorted(windows)[:SOURCES_PER_POST]
        sources = [
            Source(uri=name, chunk_index=i, section="", title=Path(name).stem, text=text, distance=0.0)
            for _, i, name, text in sorted(chosen, key=lambda w: w[1])
        ]
        prompts.append((item["question"], sources))
    return prompts


def adapter_parameters(checkpoint: Path, rank: int) -> int:
    """Parameters of a LoRA adapter of ``rank`` on every linear layer but the output head (meta device)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(checkpoint))
    output = model.get_output_embeddings()
    return sum(
        rank * (module.in_features + module.out_features)
        for module in model.modules()
        if isinstance(module, torch.nn.Linear) and module is not output
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="Django's docs, as bench/django_docs.py writes them")
    parser.add_argument("--gguf", type=Path, help="the chat model to serve (default: the packaged SmolLM2-135M)")
    parser.add_argument("--posts", type=int, default=3)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench-model-size-"))
    os.environ.update(
        {
            "PIPELINE_HOME": str(home),
            "PIPELINE_CACHE_DIR": str(home / "cache"),
            "PIPELINE_MODEL_SERVER__PORT": str(free_port()),
            "HF_HUB_OFFLINE": "1",
        }
    )
    if args.gguf:
        os.environ["PIPELINE_MODEL_SERVER__CHAT_MODEL_GGUF"] = str(args.gguf.resolve())
    import openai

    from genai_pipeline.config import get_settings
    from genai_pipeline.local.model_server import start_model_server
    from genai_pipeline.local.services import Services
    from genai_pipeline.model_server.training import (
        FULL_BYTES_PER_PARAMETER,
        full_fine_tune_fits,
        memory_limit,
        parameter_count,
    )
    from genai_pipeline.models.chat import chat_model_name, converted_checkpoint_dir
    from genai_pipeline.steps.prompt import build_messages

    settings = get_settings()
    server, gen = settings.model_server, settings.generation
    model = chat_model_name(gguf=server.chat_model_gguf)
    checkpoint = converted_checkpoint_dir(settings.cache_dir, server.chat_model_gguf)
    prompts = post_prompts(args.corpus, args.posts)
    services = Services(home)
    row: dict[str, object] = {"model": model}
    try:
        started = time.time()
        pid = start_model_server(settings, services)
        watch = ChildWatch(pid)
        while not (checkpoint / "config.json").is_file():
            if time.time() - started > 3600:
                raise SystemExit(f"no checkpoint at {checkpoint} after an hour; see {services.log('model-server')}")
            time.sleep(0.25)
        converted = time.time()
        watch.stop()
        row["conversion s"] = round(converted - (watch.first_seen or started), 1)
        row["conversion peak RSS MB"] = round(watch.peak / 1e6)
        row["checkpoint MB"] = round(folder_bytes(checkpoint) / 1e6)

        client = openai.OpenAI(base_url=server.base_url, api_key="unused", timeout=3600, max_retries=0)
        started = time.monotonic()
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hi"}], temperature=0, max_tokens=1
        )
        row["first load s"] = round(time.monotonic() - started, 1)

        seconds, prompt_tokens, completion_tokens, posts = [], [], [], []
        for question, sources in prompts:
            messages = build_messages(settings.fine_tune.system_prompt, gen.group, question, sources)
            started = time.monotonic()
            reply = client.chat.completions.create(
                model=model,
                messages=messages,
                temperature=0,
                max_tokens=256,
                frequency_penalty=0.5,
            )
            seconds.append(time.monotonic() - started)
            prompt_tokens.append(reply.usage.prompt_tokens)
            completion_tokens.append(reply.usage.completion_tokens)
            posts.append((question, reply.choices[0].message.content))
        row["prompt tokens"] = round(sum(prompt_tokens) / len(prompts))
        row["completion tokens"] = round(sum(completion_tokens) / len(prompts))
        row["s/post"] = round(sum(seconds) / len(prompts), 1)
        row["completion tokens/s"] = round(sum(completion_tokens) / sum(seconds), 2)
        row["server peak RSS MB"] = round(status_bytes(pid, "VmHWM") / 1e6)
    finally:
        services.stop("model-server")

    parameters = parameter_count(checkpoint)
    adapter = adapter_parameters(checkpoint, server.lora_rank)
    limit = memory_limit(server.train_memory_limit_bytes)
    row["parameters M"] = round(parameters / 1e6)
    row["full fine-tune GB (16 B/param)"] = round(parameters * FULL_BYTES_PER_PARAMETER / 1e9, 1)
    row[f"LoRA r={server.lora_rank} GB"] = round((parameters * 4 + adapter * FULL_BYTES_PER_PARAMETER) / 1e9, 1)
    row["LoRA parameters M"] = round(adapter / 1e6, 1)
    row["auto picks"] = "full" if full_fine_tune_fits(parameters, limit) else "lora"
    row["memory limit GB"] = round(limit / 1e9, 1)
    shutil.rmtree(home, ignore_errors=True)

    print("| " + " | ".join(row) + " |")
    print("|" + "---|" * len(row))
    print("| " + " | ".join(str(value) for value in row.values()) + " |")
    for question, text in posts[:1]:
        print(f"\n{model}, {question}\n\n{text}")
    print(
        f"\nseconds per post: {[round(s, 1) for s in seconds]}, prompt tokens: {prompt_tokens}, "
        f"completion tokens: {completion_tokens}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
