"""Model-server image benchmark: the built image run as a hardened pod runs it, answering chat and fine-tuning.

    uv run python bench/model_server_image.py [--image genai-pipeline/model-server:<tag>] [--examples 8] [--state DIR]

Runs the image with a read-only root, a tmpfs ``/tmp``, uid 10001, no capabilities, no privilege escalation and
memory/CPU limits, serving ``pipeline serve-models`` on a loopback port. Waits for ``/health``, asks the base
model one question, then fine-tunes it through the OpenAI-compatible API on a tiny JSONL of the shipped example
posts (one epoch, batch size 1: one step per example). Prints the image's size and layers, its Python and torch,
the time to healthy, the chat latency (first request, which loads the model, and a second one), the fine-tune
job's wall time and steps/s while training, and every step's training loss (to compare images exactly).

An image that carries the chat model as GGUF converts it at its first start (into the tmpfs here), so its first
chat includes the conversion. ``--state DIR`` mounts DIR at ``/data`` with the chart's env (state and cache on
the volume): a second run on the same DIR starts like a new pod on the same claim, the conversion already there.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from finetune import example_lines, jsonl  # the shipped examples as chat JSONL, as the fine-tune bench
from processes import free_port

REPO = Path(__file__).resolve().parents[1]
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
SERVER_PORT = 8088
TERMINAL = ("succeeded", "failed", "cancelled")


def default_image() -> str:
    """The model-server image of this tree: ``genai-pipeline/model-server:$(images/tag.sh)``."""
    tag = subprocess.run(["bash", str(REPO / "images" / "tag.sh")], capture_output=True, text=True, check=True)
    return f"genai-pipeline/model-server:{tag.stdout.strip()}"


def inspect(image: str) -> dict[str, Any]:
    """``docker image inspect`` of the image (it must be built)."""
    result = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{image} is not built: bash images/build.sh model-server")
    return json.loads(result.stdout)[0]


def hardened_run(image: str, port: int, memory: str, cpus: str, max_steps: int, state: Path | None) -> list[str]:
    """``docker run`` of the server the way a restricted pod runs it, published on 127.0.0.1:port only.

    With ``state``, that folder is the state volume at ``/data`` and the env is the chart Deployment's.
    """
    volume = [] if state is None else [
        "-v", f"{state}:/data", "-e", "PIPELINE_MODEL_SERVER__STATE_DIR=/data/model-server",
        "-e", "PIPELINE_CACHE_DIR=/data/cache",
    ]  # fmt: skip
    return [
        "docker", "run", "-d", "--read-only", "--tmpfs", "/tmp:rw,exec,size=2g", "--user", "10001:10001",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--memory", memory, "--cpus", cpus,
        "-e", f"PIPELINE_MODEL_SERVER__MAX_TRAIN_STEPS={max_steps}", "-p", f"127.0.0.1:{port}:{SERVER_PORT}",
        *volume, image, "pipeline", "serve-models", "--host", "0.0.0.0", "--port", str(SERVER_PORT),
    ]  # fmt: skip


def in_container(container: str, code: str) -> str:
    """Output of a Python snippet run inside the running container."""
    return subprocess.run(
        ["docker", "exec", container, "python", "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def wait_healthy(container: str, url: str, timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail with the container's log if it exits or the time runs out."""
    from genai_pipeline.local.services import answers

    deadline = time.monotonic() + timeout
    while not answers(url):
        state = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Running}}", container], capture_output=True, text=True, check=False
        )
        if state.stdout.strip() != "true" or time.monotonic() > deadline:
            logs = subprocess.run(["docker", "logs", "--tail", "30", container], capture_output=True, text=True)
            raise SystemExit(f"the server did not become healthy:\n{logs.stdout}{logs.stderr}")
        time.sleep(0.2)


def chat_seconds(client: Any, model: str) -> tuple[float, str]:
    """Wall time of one greedy chat completion, and its answer."""
    started = time.perf_counter()
    reply = client.chat.completions.create(model=model, messages=QUESTION, temperature=0, max_tokens=32)
    return time.perf_counter() - started, reply.choices[0].message.content or ""


def fine_tune(client: Any, model: str, training: bytes) -> tuple[Any, float, list[Any]]:
    """A one-epoch, batch-size-1 job on ``training``: the finished job, its wall time and its metrics events."""
    upload = client.files.create(file=("bench-train.jsonl", training), purpose="fine-tune")
    started = time.perf_counter()
    job = client.fine_tuning.jobs.create(
        model=model,
        training_file=upload.id,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 1}}},
        suffix="image-bench",
    )
    while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in TERMINAL:
        time.sleep(0.5)
    seconds = time.perf_counter() - started
    events = client.fine_tuning.jobs.list_events(job.id, limit=1000).data
    return job, seconds, sorted((e for e in events if e.type == "metrics"), key=lambda e: e.data["step"])


def main() -> int:
    """Run the image, measure it, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="image to run (default: genai-pipeline/model-server:$(images/tag.sh))")
    parser.add_argument("--examples", type=int, default=8, help="training examples, one step each")
    parser.add_argument("--memory", default="6g", help="container memory limit (the tmpfs counts against it)")
    parser.add_argument("--cpus", default="2", help="container CPU limit")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for /health")
    parser.add_argument("--state", type=Path, help="folder mounted as the state volume /data (made writable for 10001)")
    args = parser.parse_args()

    from genai_pipeline.clients.openai_compat import make_openai_client
    from genai_pipeline.config import OpenAISettings, Settings
    from genai_pipeline.models.chat import BASE_CHAT_MODEL
    from genai_pipeline.steps.finetune_metrics import parse_results, summarize

    image = args.image or default_image()
    info = inspect(image)
    settings = Settings()
    tune = settings.fine_tune
    examples = example_lines(tune.train_examples, tune.system_prompt, settings.ingest.max_document_bytes)
    training = jsonl(examples[: args.examples])

    if args.state:
        args.state = args.state.resolve()
        args.state.mkdir(parents=True, exist_ok=True)
        args.state.chmod(0o777)  # the server runs as uid 10001
    port = free_port()
    started = time.perf_counter()
    container = subprocess.run(
        hardened_run(image, port, args.memory, args.cpus, args.examples, args.state),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        wait_healthy(container, f"http://127.0.0.1:{port}/health", args.timeout)
        healthy = time.perf_counter() - started
        versions = in_container(container, "import sys, torch; print(sys.version.split()[0], torch.__version__)")
        endpoint = OpenAISettings(base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, timeout_seconds=900)
        client = make_openai_client(settings.model_copy(update={"openai": endpoint}))
        first_chat, answer = chat_seconds(client, BASE_CHAT_MODEL)
        warm_chat, _ = chat_seconds(client, BASE_CHAT_MODEL)
        job, job_seconds, metrics = fine_tune(client, BASE_CHAT_MODEL, training)
        if job.status != "succeeded":
            print(f"fine-tune {job.status}: {job.error}")
            return 1
        summary = summarize(parse_results(client.files.content(job.result_files[0]).read()))
        memory = subprocess.run(
            ["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", container], capture_output=True, text=True
        ).stdout.strip()
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)

    python_version, torch_version = versions.split()
    train_seconds = max(metrics[-1].created_at - metrics[0].created_at, 1) if len(metrics) > 1 else None
    steps_per_s = f"{(len(metrics) - 1) / train_seconds:.2f}" if train_seconds else "n/a"
    print(f"image            {image}")
    print(f"size             {info['Size'] / 1e6:,.0f} MB, {len(info['RootFS']['Layers'])} layers")
    print(f"contents         Python {python_version}, torch {torch_version}")
    volume = f", state volume {args.state}" if args.state else ""
    print(f"limits           --memory {args.memory} --cpus {args.cpus} (read-only root, tmpfs /tmp, uid 10001{volume})")
    print(f"healthy after    {healthy:.1f} s (docker run -> /health 200)")
    print(f"chat             {first_chat:.2f} s first (loads the model), {warm_chat:.2f} s warm: {answer.strip()!r}")
    print(
        f"fine-tune        {job.status} in {job_seconds:.1f} s (create -> succeeded, incl. load and save), "
        f"{summary['steps']} steps, {steps_per_s} steps/s while training, "
        f"train loss {summary['first_train_loss']} -> {summary['final_train_loss']}"
    )
    print(f"train losses     {', '.join(repr(e.data['train_loss']) for e in metrics)}")
    print(f"memory at end    {memory}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
