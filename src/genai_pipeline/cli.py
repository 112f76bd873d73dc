"""``pipeline``: the project's command line (demo, local services, steps, models).

``pipeline demo`` is the embedded default end to end: the packaged model, a real Weaviate server,
real Airflow with its scheduler, the ``start`` DAG updating the source Assets and the Asset-triggered
ingestion run followed with a progress bar, then a summary.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from genai_pipeline.config import Settings, get_settings


def _services(settings: Settings):
    from genai_pipeline.local.services import Services

    return Services(settings.home)


def cmd_models_prepare(args: argparse.Namespace) -> int:
    """Export the embedding model to ONNX and, if asked, convert the chat model; print where they are."""
    from genai_pipeline.models.packaged import embedding_model_dir, export_embedding_model

    settings = get_settings()
    print(export_embedding_model(Path(args.out)) if args.out else embedding_model_dir(settings.cache_dir))
    if args.chat_out:
        from genai_pipeline.models.chat import convert_chat_model

        print(convert_chat_model(Path(args.chat_out)))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """Start Weaviate and Airflow (scheduler, dag-processor, triggerer, API server) in the background."""
    settings = get_settings()
    services = _services(settings)
    from genai_pipeline.local.airflow_env import start_airflow
    from genai_pipeline.local.model_server import start_model_server
    from genai_pipeline.local.weaviate_server import binary_path, start_weaviate
    from genai_pipeline.models.embeddings import make_token_counter

    _say("preparing the packaged embedding model")
    make_token_counter(settings)  # exports the model once; tasks then only load it
    if not binary_path(settings).is_file():
        _say(
            f"building weaviate-server {settings.weaviate.server_version} with `go install` (once per machine, 2-4 min)"
        )
    _say(f"starting Weaviate {settings.weaviate.server_version} on 127.0.0.1:{settings.weaviate.http_port}")
    start_weaviate(settings, services)
    _say(f"starting the local model server on {settings.model_server.base_url}")
    start_model_server(settings, services)
    _say(f"starting Airflow (scheduler, dag-processor, triggerer, API server on 127.0.0.1:{args.api_port})")
    start_airflow(settings, services, args.api_port)
    _say(f"up: Airflow UI http://127.0.0.1:{args.api_port}  logs {services.log_dir}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """Stop everything ``up`` started."""
    settings = get_settings()
    services = _services(settings)
    from genai_pipeline.local.airflow_env import stop_airflow

    stop_airflow(services)
    services.stop("model-server")
    services.stop("weaviate")
    _say("stopped")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Bring the stack up, trigger ``start``, follow the Asset-triggered ingestion, print its summary.

    The demo's Airflow schedules ingestion on the source Assets only: with the cron on, Airflow runs the
    latest past tick as soon as it first sees the DAG, and that run would take the demo's documents first.
    """
    os.environ["PIPELINE_INGEST__SCHEDULE_CRON"] = ""
    get_settings.cache_clear()
    cmd_up(args)
    settings = get_settings()
    from genai_pipeline.local.airflow_env import AirflowAPI

    try:
        api = AirflowAPI(args.api_port)
        _wait(lambda: all(api.dag_loaded(d) for d in ("start", "ingest_knowledge_base")), 180, "DAGs parsed")
        since = time.time()
        start_run = api.trigger("start")
        _say(f"triggered start ({start_run}); waiting for the Asset-triggered ingest_knowledge_base run")
        run = _follow_ingest(api, since, args.timeout)
        summary = _summary_for(settings, run)
        print_summary(summary)
        if run["state"] != "success":
            _say(f"ingest_knowledge_base ended {run['state']}: see the Airflow UI or {settings.home / 'airflow'}")
            return 1
        return 0
    finally:
        if not args.keep_running:
            cmd_down(args)


def _follow_ingest(api, since: float, timeout: float) -> dict[str, Any]:
    from datetime import datetime

    from tqdm import tqdm

    def asset_run() -> dict[str, Any] | None:
        for run in api.runs("ingest_knowledge_base"):
            started = datetime.fromisoformat(run["run_after"]).timestamp()
            if run["run_type"] == "asset_triggered" and started >= since - 1:
                return run
        return None

    run = _wait(asset_run, timeout, "the Asset-triggered ingestion run")
    with tqdm(total=1, unit="task", desc="ingest_knowledge_base", dynamic_ncols=True) as bar:
        deadline = time.monotonic() + timeout
        while True:
            tis = api.task_instances("ingest_knowledge_base", run["dag_run_id"])
            done = [t for t in tis if t["state"] in ("success", "skipped", "failed", "upstream_failed", "removed")]
            bar.total = max(len(tis), 1)
            bar.n = len(done)
            running = [_ti_name(t) for t in tis if t["state"] == "running"]
            bar.set_postfix_str(", ".join(running)[:60])
            bar.refresh()
            run = next(r for r in api.runs("ingest_knowledge_base") if r["dag_run_id"] == run["dag_run_id"])
            if run["state"] in ("success", "failed"):
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"ingest_knowledge_base run {run['dag_run_id']} still {run['state']}")
            time.sleep(2)


def _ti_name(ti: dict[str, Any]) -> str:
    if ti["map_index"] < 0:
        return ti["task_id"]
    return f"{ti['task_id']} {ti.get('rendered_map_index') or ti['map_index']}"


def _summary_for(settings: Settings, run: dict[str, Any]) -> dict[str, Any]:
    from genai_pipeline.steps.ingest import run_key_for
    from genai_pipeline.store import Store

    store = Store(settings.store)
    key = f"reports/ingest/{run_key_for(run['dag_run_id'])}.json"
    return store.read_json(key) if store.exists(key) else {"run_key": run["dag_run_id"], "state": run["state"]}


def print_summary(summary: dict[str, Any]) -> None:
    """The human summary of one ingestion run."""
    rejected = summary.get("rejected", [])
    lines = [
        f"Ingestion run {summary.get('run_key')} into {summary.get('collection')} ({summary.get('model')})",
        f"  documents        {summary.get('documents')}",
        f"  ingested         {summary.get('ingested')}  ({summary.get('batches')} batches)",
        f"  skipped          {summary.get('skipped_unchanged')} unchanged",
        f"  removed          {summary.get('removed_documents')} documents ({summary.get('removed_chunks')} chunks)",
        f"  chunks written   {summary.get('chunks')}  (stale deleted: {summary.get('stale_chunks_deleted')})",
        f"  embedding calls  {summary.get('embed_calls')}",
        f"  time             {summary.get('seconds')} s  ({summary.get('docs_per_s')} docs/s, "
        f"{summary.get('chunks_per_s')} chunks/s)",
        *(
            f"  UNAVAILABLE      {u['source']}: {u['reason']} ({u['kept_documents']} stored documents kept)"
            for u in summary.get("unavailable_sources", [])
        ),
        f"  hidden skipped   {len(summary.get('hidden_skipped', []))}",
        f"  rejected         {len(rejected)}",
        *(
            f"    ! {uri}: refused now, its previously loaded version is still searchable"
            for uri in summary.get("rejected_still_searchable", [])
        ),
        *(f"    - {r['uri']}: {r['reason']}" for r in rejected),
    ]
    print("\n".join(lines))


def _wait(probe, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(2)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _say(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def cmd_serve_models(args: argparse.Namespace) -> int:
    """Run the local OpenAI-compatible model server in the foreground."""
    import os

    import uvicorn

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models come from packages, never from a hub
    from genai_pipeline.model_server.app import create_app

    settings = get_settings()
    uvicorn.run(
        create_app(settings),
        host=args.host or settings.model_server.host,
        port=args.port or settings.model_server.port,
        log_level="warning",
    )
    return 0


def cmd_step(args: argparse.Namespace) -> int:
    """Run one step with a JSON descriptor, as its image does."""
    from genai_pipeline.runner import main

    return main([args.name, *([args.payload] if args.payload else [])])


def cmd_weaviate(args: argparse.Namespace) -> int:
    """Start or stop only the local Weaviate server."""
    settings = get_settings()
    services = _services(settings)
    if args.action == "start":
        from genai_pipeline.local.weaviate_server import start_weaviate

        start_weaviate(settings, services)
    else:
        services.stop("weaviate")
    return 0


def cmd_kubernetes_connection(args: argparse.Namespace) -> int:
    """Print the ``kubernetes_default`` connection (JSON) Airflow launches step pods with."""
    import json

    from genai_pipeline.orchestration.pods import kubernetes_connection

    print(json.dumps(kubernetes_connection(get_settings())))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="pipeline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    for name, handler, help_text in (
        ("up", cmd_up, "start Weaviate and Airflow locally"),
        ("demo", cmd_demo, "run the whole pipeline on the embedded default"),
    ):
        command = sub.add_parser(name, help=help_text)
        command.add_argument("--api-port", type=int, default=8080)
        command.add_argument("--timeout", type=float, default=1800)
        command.add_argument("--keep-running", action="store_true", help="leave the services up afterwards")
        command.set_defaults(handler=handler)
    sub.add_parser("down", help="stop the local services").set_defaults(handler=cmd_down)

    models = sub.add_parser("models", help="packaged models").add_subparsers(dest="action", required=True)
    prepare = models.add_parser("prepare", help="export the embedding model to ONNX")
    prepare.add_argument("--out", help="target folder (default: the cache)")
    prepare.add_argument("--chat-out", help="also convert the chat model into this folder (for images)")
    prepare.set_defaults(handler=cmd_models_prepare)

    step = sub.add_parser("step", help="run one pipeline step with a JSON descriptor")
    step.add_argument("name")
    step.add_argument("payload", nargs="?")
    step.set_defaults(handler=cmd_step)

    serve = sub.add_parser("serve-models", help="run the local OpenAI-compatible model server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(handler=cmd_serve_models)

    sub.add_parser(
        "kubernetes-connection", help="print AIRFLOW_CONN_KUBERNETES_DEFAULT for launching step pods"
    ).set_defaults(handler=cmd_kubernetes_connection)

    weaviate = sub.add_parser("weaviate", help="the local Weaviate server")
    weaviate.add_argument("action", choices=["start", "stop"])
    weaviate.set_defaults(handler=cmd_weaviate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pipeline`` command."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
