"""Service control of the local stack: start and stop Weaviate, the model server, the web page and Airflow."""

from __future__ import annotations

import argparse
import sys
import time

from genai_pipeline.config import Settings, get_settings


def local_services(settings: Settings):
    from genai_pipeline.local.services import Services

    return Services(settings.home)


def cmd_up(args: argparse.Namespace) -> int:
    """Start Weaviate and Airflow (scheduler, dag-processor, triggerer, API server) in the background."""
    settings = get_settings()
    services = local_services(settings)
    from genai_pipeline.local.airflow_env import start_airflow
    from genai_pipeline.local.model_server import start_model_server, start_web_page
    from genai_pipeline.local.weaviate_server import binary_path, start_weaviate
    from genai_pipeline.models.embeddings import make_token_counter

    say("preparing the packaged embedding model")
    make_token_counter(settings)  # exports the model once; tasks then only load it
    if not binary_path(settings).is_file():
        say(
            f"building weaviate-server {settings.weaviate.server_version} with `go install` (once per machine, 2-4 min)"
        )
    say(f"starting Weaviate {settings.weaviate.server_version} on 127.0.0.1:{settings.weaviate.http_port}")
    start_weaviate(settings, services)
    say(f"starting the local model server on {settings.model_server.base_url}")
    start_model_server(settings, services)
    say(f"starting the post-writing web page on http://127.0.0.1:{args.web_port}")
    start_web_page(settings, services, args.web_port)
    say(f"starting Airflow (scheduler, dag-processor, triggerer, API server on 127.0.0.1:{args.api_port})")
    start_airflow(settings, services, args.api_port)
    say(
        f"up: Airflow UI http://127.0.0.1:{args.api_port}  web page http://127.0.0.1:{args.web_port}  "
        f"logs {services.log_dir}"
    )
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """Stop everything ``up`` started."""
    stop_stack(get_settings())
    say("stopped")
    return 0


def stop_stack(settings: Settings) -> None:
    """Stop Airflow (task processes included), the web page, the model server and Weaviate."""
    from genai_pipeline.local.airflow_env import SERVICE_NAMES
    from genai_pipeline.local.model_server import WEB_PAGE

    local_services(settings).stop_all([*SERVICE_NAMES, WEB_PAGE, "model-server", "weaviate"])


def wait(probe, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(2)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def say(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)
