"""``pipeline``: the project's command line (demo, local services, steps, models); its parser and entry point."""

from __future__ import annotations

import argparse
import logging
import sys

from genai_pipeline.cli.commands import (
    cmd_check_deploy,
    cmd_generate,
    cmd_kubernetes_connection,
    cmd_lineage,
    cmd_models_prepare,
    cmd_serve_models,
    cmd_step,
    cmd_trigger,
    cmd_weaviate,
)
from genai_pipeline.cli.runs import cmd_demo, cmd_ingest
from genai_pipeline.cli.stack import cmd_down, cmd_up


def _stack_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--api-port", type=int, default=8080)
    command.add_argument("--web-port", type=int, default=8090, help="the post-writing web page")
    command.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds without progress")
    command.add_argument("--keep-running", action="store_true", help="leave the services up afterwards")


def build_parser() -> argparse.ArgumentParser:
    """Argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="pipeline", description="The project's command line: demo, local services, steps, models."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    for name, handler, help_text in (
        ("up", cmd_up, "start Weaviate and Airflow locally"),
        ("demo", cmd_demo, "run the whole pipeline on the embedded default"),
    ):
        command = sub.add_parser(name, help=help_text)
        _stack_options(command)
        command.set_defaults(handler=handler)
    ingest = sub.add_parser(
        "ingest", help="ingest your own folders or fsspec URLs through the local Airflow stack, with a summary"
    )
    ingest.add_argument("paths", nargs="*", metavar="PATH", help="a folder or URL; the source is named after it")
    ingest.add_argument("--source", action="append", default=[], metavar="NAME=PATH", help="a named source")
    ingest.add_argument("--dry-run", action="store_true", help="plan only: counts, rejections, removals")
    ingest.add_argument("--allow-mass-prune", action="store_true", help="lift the guard on pruning most of a source")
    ingest.add_argument(
        "--prune-removed-sources", action="store_true", help="remove documents of sources not given this time"
    )
    _stack_options(ingest)
    ingest.set_defaults(handler=cmd_ingest)
    sub.add_parser("down", help="stop the local services").set_defaults(handler=cmd_down)
    generate = sub.add_parser("generate", help="write a post about a topic, grounded in the knowledge base")
    generate.add_argument("topic")
    generate.add_argument("--k", type=int, help="sources to retrieve (default PIPELINE_GENERATION__K)")
    generate.add_argument("--threshold", type=float, help="largest cosine distance of a source")
    generate.add_argument("--model", help="a model id instead of the champion")
    generate.set_defaults(handler=cmd_generate)
    lineage = sub.add_parser(
        "lineage", help="which documents and examples produced a model or a post (manifest and OpenLineage events)"
    )
    lineage.add_argument(
        "target", metavar="MODEL_OR_POST", help="a fine-tuned model id, its job id, a post's path or label, a dataset"
    )
    lineage.add_argument("--json", action="store_true", help="print the manifest and the traced events as JSON")
    lineage.set_defaults(handler=cmd_lineage)

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

    trigger = sub.add_parser(
        "trigger",
        help="start the pipeline through Airflow's REST API: an update of a knowledge-base source, or a DAG run",
        description="Credentials come only from AIRFLOW_API_USERNAME / AIRFLOW_API_PASSWORD (none: the local stack).",
    )
    trigger.add_argument("source", nargs="?", help="a knowledge-base source name (its Asset kb-source://NAME)")
    trigger.add_argument("--extra", action="append", default=[], metavar="KEY=VALUE", help="extra of the Asset event")
    trigger.add_argument("--dag", help="trigger this DAG instead of posting an Asset event")
    trigger.add_argument("--conf", help="run conf (JSON) for --dag")
    trigger.add_argument("--api-url", help="Airflow's base URL (default AIRFLOW_API_URL or http://127.0.0.1:8080)")
    trigger.set_defaults(handler=cmd_trigger)

    sub.add_parser(
        "check-deploy", help="check a deployed release can run the pipeline (what `helm test` runs)"
    ).set_defaults(handler=cmd_check_deploy)

    weaviate = sub.add_parser("weaviate", help="the local Weaviate server")
    weaviate.add_argument("action", choices=["start", "stop"])
    weaviate.set_defaults(handler=cmd_weaviate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pipeline`` command."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        # The handlers' own clean-up (stopping what they started) has run by now.
        print("\ninterrupted: everything this command started is stopped", file=sys.stderr)
        return 130
