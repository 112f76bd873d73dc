"""Fine-tune benchmark: a CPU fine-tune on the shipped example posts teaches facts the base model lacks.

    uv run python bench/finetune.py [--max-steps 40] [--learning-rate-multiplier 2] [--method lora]
                                    [--busy-cores 1] [--omp-wait-policy ACTIVE]

Starts the local model server in a temporary home, fine-tunes SmolLM2-135M-Instruct on the example posts
shipped with the package (train and validation folders, one post per file with its numbered sources, the group
its subfolder), then asks the base and the tuned model every held-out prompt greedily, as the pipeline's scoring
does. Prints examples, steps, job seconds, steps/s, each model's champion/challenger scores (fact coverage,
citation share, groundedness and their weighted score; answer token F1) and the answers.

``--busy-cores N`` keeps N busy-looping processes running through the job, as Airflow tasks, the embedder or
another pytest worker do on a shared machine; ``--omp-wait-policy`` sets the server's OpenMP threads' policy
(it defaults to PASSIVE, `pipeline serve-models`), to compare what spinning threads cost there.
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

from processes import free_port, status_bytes

EPOCHS, BATCH_SIZE, SEED = 3, 1, 42


def example_lines(root: str, system_prompt: str, max_bytes: int) -> list[dict]:
    """Chat examples of every post under ``root``'s group subfolders, in a stable order."""
    from genai_pipeline.steps.documents import resolve_root
    from genai_pipeline.steps.examples import example_messages, parse_post

    examples = []
    for path in sorted(Path(resolve_root(root)).glob("*/*.txt")):
        post = parse_post(path.read_bytes(), max_bytes=max_bytes, name=f"{path.parent.name}/{path.name}")
        examples.append({"messages": example_messages(system_prompt, path.parent.name, post)})
    return examples


def jsonl(rows: list[dict]) -> bytes:
    """Rows as JSON Lines."""
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def stop(processes: list[subprocess.Popen]) -> None:
    """Kill and reap the busy loops (a second call finds them gone)."""
    for process in processes:
        process.kill()
        process.wait()
    processes.clear()


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=40, help="the model server's training step cap")
    parser.add_argument(
        "--learning-rate-multiplier", type=float, default=2.0, help="times the base rate (full 5e-5, LoRA 5e-4)"
    )
    parser.add_argument("--method", choices=["auto", "full", "lora"], default="auto", help="the fine-tune method")
    parser.add_argument("--busy-cores", type=int, default=0, help="busy-looping processes beside the job")
    parser.add_argument("--omp-wait-policy", choices=["ACTIVE", "PASSIVE"], help="the server's OMP_WAIT_POLICY")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    os.environ.update(
        {
            "PIPELINE_HOME": str(home),
            "PIPELINE_MODEL_SERVER__PORT": str(free_port()),
            "PIPELINE_MODEL_SERVER__MAX_TRAIN_STEPS": str(args.max_steps),
            "PIPELINE_MODEL_SERVER__FINE_TUNE_METHOD": args.method,
            "HF_HUB_OFFLINE": "1",
            **({"OMP_WAIT_POLICY": args.omp_wait_policy} if args.omp_wait_policy else {}),
        }
    )
    import openai

    from genai_pipeline.config import Settings
    from genai_pipeline.local.model_server import start_model_server
    from genai_pipeline.local.services import Services
    from genai_pipeline.models.chat import BASE_CHAT_MODEL
    from genai_pipeline.models.embeddings import make_embedder
    from genai_pipeline.steps.champion import answer, load_heldout, model_scores, score_answer
    from genai_pipeline.steps.documents import resolve_root

    settings = Settings()
    tune = settings.fine_tune
    max_bytes = settings.ingest.max_document_bytes
    train = example_lines(tune.train_examples, tune.system_prompt, max_bytes)
    valid = example_lines(tune.validation_examples, tune.system_prompt, max_bytes)
    heldout = load_heldout(Path(resolve_root(tune.heldout)).read_bytes())
    services = Services(home)
    server_pid = start_model_server(settings, services)
    busy: list[subprocess.Popen] = []  # stopped however the job ends, an error included
    try:
        client = openai.OpenAI(base_url=settings.model_server.base_url, api_key="unused", timeout=300)

        def answers(model: str) -> list[str]:
            return answer(client, settings, model, heldout)  # greedy, as the pipeline's scoring asks

        base = answers(BASE_CHAT_MODEL)
        training = client.files.create(file=("train.jsonl", jsonl(train)), purpose="fine-tune")
        validation = client.files.create(file=("validation.jsonl", jsonl(valid)), purpose="fine-tune")
        hyperparameters = {
            "n_epochs": EPOCHS,
            "batch_size": BATCH_SIZE,
            "learning_rate_multiplier": args.learning_rate_multiplier,
        }
        busy += [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy_cores)]
        started = time.perf_counter()
        job = client.fine_tuning.jobs.create(
            model=BASE_CHAT_MODEL,
            training_file=training.id,
            validation_file=validation.id,
            method={"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
            seed=SEED,
            suffix="bench",
        )
        while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.5)
        job_seconds = time.perf_counter() - started
        stop(busy)
        if job.status != "succeeded":
            print(f"fine-tune {job.status}: {job.error}")
            return 1
        events = client.fine_tuning.jobs.list_events(job.id, limit=1000).data
        metric_events = sorted((e for e in events if e.type == "metrics"), key=lambda e: e.data["step"])
        metrics = [e.data for e in metric_events]
        train_seconds = max(metric_events[-1].created_at - metric_events[0].created_at, 1) if metric_events else 1
        method = next(e.message for e in events if e.message.startswith("Training "))
        saved_mb = sum(f.stat().st_size for f in (settings.model_server_dir / "models" / job.id).iterdir()) / 1e6
        peak_mb = status_bytes(server_pid, "VmHWM") / 2**20  # base answers, then the job
        tuned = answers(job.fine_tuned_model)
    finally:
        stop(busy)
        services.stop("model-server")
        shutil.rmtree(home, ignore_errors=True)  # a tuned model is 0.5 GB

    steps = len(metrics)
    valid_losses = [m["valid_loss"] for m in metrics if "valid_loss" in m]
    embed = make_embedder(settings).embed
    base_items = [score_answer(i, a, embed, settings.generation.quality) for i, a in zip(heldout, base, strict=True)]
    tuned_items = [score_answer(i, a, embed, settings.generation.quality) for i, a in zip(heldout, tuned, strict=True)]
    base_scores = model_scores(BASE_CHAT_MODEL, base_items, tune.score_weights)
    tuned_scores = model_scores(job.fine_tuned_model, tuned_items, tune.score_weights)
    planned = EPOCHS * -(-len(train) // BATCH_SIZE)
    lora = method.startswith("Training a LoRA adapter")
    server = settings.model_server
    base_rate = server.lora_base_learning_rate if lora else server.base_learning_rate
    learning_rate = base_rate * args.learning_rate_multiplier
    print(
        f"examples: {len(train)} train, {len(valid)} validation, {len(heldout)} held-out; "
        f"{EPOCHS} epochs, batch {BATCH_SIZE}, lr multiplier {args.learning_rate_multiplier:g} (lr {learning_rate:g})"
    )
    print(f"steps: {steps} of {planned} planned (cap {args.max_steps}), trained tokens {job.trained_tokens}")
    policy = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
    print(f"method: {method}; OMP_WAIT_POLICY {policy}; {args.busy_cores} cores busy beside the job")
    print(
        f"saved: {saved_mb:.1f} MB ({'the LoRA adapter' if lora else 'a full checkpoint'}); model server peak RSS "
        f"{peak_mb:,.0f} MB (VmHWM: base model answers, then the job)"
    )
    print(
        f"job: {job_seconds:.1f} s end to end incl. load and save; {(steps - 1) / train_seconds:.2f} steps/s "
        f"while training (incl. a validation pass every {settings.model_server.eval_every_steps} steps)"
    )
    print(
        f"loss: train {metrics[0]['train_loss']:.3f} -> {metrics[-1]['train_loss']:.3f}"
        + (f", validation {valid_losses[0]:.3f} -> {valid_losses[-1]:.3f}" if valid_losses else "")
    )
    for name, scores in (("base", base_scores), ("tuned", tuned_scores)):
        print(
            f"{name:5} score {scores.score:.3f}: fact coverage {scores.fact_coverage:.2f}, citations "
            f"{scores.citation_share:.2f}, groundedness {scores.groundedness:.2f}; answer token F1 "
            f"{scores.answer_token_f1:.3f}"
        )
    for item, base_answer, tuned_answer, base_item, tuned_item in zip(
        heldout, base, tuned, base_items, tuned_items, strict=True
    ):
        print(f"\n[{item.group}] {item.title}  facts={list(item.facts)}")
        for name, text, figures in (("base", base_answer, base_item), ("tuned", tuned_answer, tuned_item)):
            print(
                f"  {name:5} (facts {figures.fact_coverage:.0f}, cited {figures.citation_share:.2f}, grounded "
                f"{figures.groundedness:.2f}): {' '.join(text.split())}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
