"""The commands that need no Airflow run: generate a post, trace lineage, serve models, run a step, trigger."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genai_pipeline.cli.reports import model_manifest_text, print_post
from genai_pipeline.cli.stack import local_services
from genai_pipeline.config import get_settings


def cmd_models_prepare(args: argparse.Namespace) -> int:
    """Export the embedding model to ONNX and, if asked, convert the chat model; print where they are."""
    from genai_pipeline.models.packaged import embedding_model_dir, export_embedding_model

    settings = get_settings()
    print(export_embedding_model(Path(args.out)) if args.out else embedding_model_dir(settings.cache_dir))
    if args.chat_out:
        from genai_pipeline.models.chat import convert_chat_model

        print(convert_chat_model(Path(args.chat_out)))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """Write one post about a topic from the knowledge base and the champion model, and print it with its sources.

    Needs the knowledge base (``pipeline demo`` or ``pipeline ingest`` first); Weaviate and, with no hosted API,
    the local model server are started for the call when they are not running, and stopped again.
    """
    from genai_pipeline.clients.context import service_context
    from genai_pipeline.clients.weaviate import WeaviateUnavailable
    from genai_pipeline.local.model_server import start_model_server
    from genai_pipeline.local.weaviate_server import start_weaviate
    from genai_pipeline.steps.generation import GenerationError, write_post

    settings = get_settings()
    gen = settings.generation
    services = local_services(settings)
    started = []
    try:
        if services.pid("weaviate") is None:
            start_weaviate(settings, services)
            started.append("weaviate")
        if settings.openai.base_url is None and services.pid("model-server") is None:
            start_model_server(settings, services)
            started.append("model-server")
        result = write_post(
            service_context(settings),
            args.topic,
            k=args.k,
            threshold=args.threshold,
            alpha=gen.hybrid_alpha,
            model=args.model,
        )
    except (GenerationError, WeaviateUnavailable) as error:
        print(f"pipeline generate: {error}", file=sys.stderr)
        return 1
    finally:
        for name in reversed(started):
            services.stop(name)
    print_post(result)
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    """Which documents and examples produced a model or a post: its manifest and the OpenLineage events."""
    import json

    from genai_pipeline.lineage_events import LineageGraph, LineageNotFound, describe
    from genai_pipeline.steps.finetune import read_lineage
    from genai_pipeline.store import Store

    settings = get_settings()
    problems = []
    try:
        manifest = read_lineage(Store(settings.store), args.target)
    except KeyError as error:
        manifest, problems = None, [error.args[0]]
    try:
        graph = LineageGraph.from_folder(settings.lineage_dir)
        traced = graph.trace(graph.resolve(manifest["model"] if manifest else args.target))
    except LineageNotFound as error:
        traced = None
        problems.append(f"events in {settings.lineage_dir}: {error.args[0]}")
    if manifest is None and traced is None:
        print("pipeline lineage: " + "; ".join(problems), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"manifest": manifest, "events": traced.as_dict() if traced else None}, indent=2))
        return 0
    if manifest:
        print(model_manifest_text(manifest))
    if traced:
        print(("From OpenLineage events:\n" if manifest else "") + describe(traced))
    return 0


def cmd_serve_models(args: argparse.Namespace) -> int:
    """Run the local OpenAI-compatible model server in the foreground."""
    import os

    import uvicorn

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models come from packages, never from a hub
    # torch's OpenMP threads sleep at a barrier instead of spinning (read once, before torch loads). The server
    # shares its cores with Airflow tasks, the embedder and Weaviate (or a pod's CPU limit): spinning threads
    # then wait on descheduled ones and burn what the others need. With one core busy elsewhere, a SmolLM2
    # training step took 6.5 s spinning and 3.9 s passive; on idle cores passive costs 17 % (docs/benchmarks.md).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from genai_pipeline.model_server.app import create_app

    settings = get_settings()
    app = create_app(settings)
    app.state.registry.prepare_in_background()
    uvicorn.run(
        app,
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
    services = local_services(settings)
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


def cmd_trigger(args: argparse.Namespace) -> int:
    """Start the pipeline from outside through Airflow's REST API: a source's Asset event, or a DAG run."""
    import json

    from genai_pipeline.airflow_api import AirflowAPI

    if not (args.dag or args.source) or (args.dag and args.source):
        print("pipeline trigger: name either a SOURCE or --dag DAG_ID", file=sys.stderr)
        return 2
    if bad := [item for item in args.extra if "=" not in item]:
        print(f"pipeline trigger: --extra takes KEY=VALUE, got {bad}", file=sys.stderr)
        return 2
    api = AirflowAPI.from_env(args.api_url)
    if args.dag:
        conf = json.loads(args.conf) if args.conf else {}
        print(f"{args.dag}: run {api.trigger(args.dag, conf)} queued")
        return 0
    from genai_pipeline.orchestration.assets import source_uri

    extra = dict(item.split("=", 1) for item in args.extra)
    try:
        event = api.post_asset_event(source_uri(args.source), {"triggered_by": "pipeline trigger", **extra})
    except LookupError as error:
        print(f"pipeline trigger: {error}", file=sys.stderr)
        return 1
    print(f"{event['uri']}: Asset event {event['id']} recorded; the DAGs scheduled on it (ingestion) start")
    return 0


def cmd_check_deploy(args: argparse.Namespace) -> int:
    """The release's `helm test`: Weaviate and its collection, and a step pod the launcher may create."""
    from genai_pipeline.orchestration.deploy_check import run_checks

    return 0 if run_checks() else 1
