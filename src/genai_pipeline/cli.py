"""``pipeline``: the project's command line (demo, local services, steps, models).

``pipeline demo`` is the embedded default end to end: the packaged models, a real Weaviate server, the
local model server, real Airflow with its scheduler and triggerer, the ``start`` DAG updating the source and
example Assets, then the ingestion run and the fine-tuning chain (examples -> gate -> fine-tune ->
champion/challenger) they trigger, each followed with a progress bar, then summaries.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from genai_pipeline.config import Settings, get_settings
from genai_pipeline.steps.decisions import FineTuneTask


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
    from genai_pipeline.local.model_server import start_model_server, start_web_page
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
    _say(f"starting the post-writing web page on http://127.0.0.1:{args.web_port}")
    start_web_page(settings, services, args.web_port)
    _say(f"starting Airflow (scheduler, dag-processor, triggerer, API server on 127.0.0.1:{args.api_port})")
    start_airflow(settings, services, args.api_port)
    _say(
        f"up: Airflow UI http://127.0.0.1:{args.api_port}  web page http://127.0.0.1:{args.web_port}  "
        f"logs {services.log_dir}"
    )
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """Stop everything ``up`` started."""
    _stop_stack(get_settings())
    _say("stopped")
    return 0


def _stop_stack(settings: Settings) -> None:
    """Stop Airflow (task processes included), the web page, the model server and Weaviate."""
    from genai_pipeline.local.airflow_env import SERVICE_NAMES
    from genai_pipeline.local.model_server import WEB_PAGE

    _services(settings).stop_all([*SERVICE_NAMES, WEB_PAGE, "model-server", "weaviate"])


def cmd_demo(args: argparse.Namespace) -> int:
    """Bring the stack up, trigger ``start``, follow ingestion and the fine-tuning chain its Asset events cause."""
    cmd_up(args)
    settings = get_settings()
    try:
        api = _api_with_dags(args.api_port)
        start_run = api.trigger("start")
        _say(f"triggered start ({start_run}); following the runs its Asset events cause")
        run_id = _wait(lambda: api.run_caused_by(INGEST_DAG, "start", start_run), args.timeout, "the ingestion run")
        ingested = _finish(settings, _follow(api, INGEST_DAG, run_id, args.timeout))
        return max(ingested, _follow_fine_tuning(api, settings, start_run, args.timeout))
    finally:
        if not args.keep_running:
            _stop_stack(settings)


# Each DAG of the fine-tuning path is started by the Asset events of the one before.
FINE_TUNING_CHAIN = ("format_examples", "evaluate_examples", "fine_tune", "champion_challenger")


def _follow_fine_tuning(api, settings: Settings, start_run: str, timeout: float) -> int:
    """Follow examples -> gate -> fine-tune -> champion/challenger by Asset events, then print what came of it."""
    source_dag, source_run = "start", start_run
    for dag_id in FINE_TUNING_CHAIN:
        run_id = _wait(
            lambda d=dag_id, sd=source_dag, sr=source_run: api.run_caused_by(d, sd, sr), timeout, f"the {dag_id} run"
        )
        run = _follow(api, dag_id, run_id, timeout)
        if run["state"] != "success":
            _say(f"{dag_id} ended {run['state']}: see the Airflow UI or {settings.home / 'logs'}")
            return 1
        if dag_id == "evaluate_examples" and _task_state(api, dag_id, run_id, FineTuneTask.OVER_BUDGET) == "success":
            _say("the cost gate stopped fine-tuning: the estimate is over budget (see the over_budget task's log)")
            return 0
        source_dag, source_run = dag_id, run_id
    print_fine_tuning_summary(_fine_tuning_summary(settings, source_run))
    return _follow_generation(api, settings, source_run, timeout)


GENERATE_DAG = "generate_content"


def _follow_generation(api, settings: Settings, champion_run: str, timeout: float) -> int:
    """The posts: from the run a promotion triggered, else (the champion stayed) from a run started here."""
    promoted = _task_state(api, "champion_challenger", champion_run, FineTuneTask.PROMOTE_CHALLENGER) == "success"
    if promoted and settings.generation.regenerate_on_champion:
        run_id = _wait(
            lambda: api.run_caused_by(GENERATE_DAG, "champion_challenger", champion_run), timeout, "the generation run"
        )
    else:
        run_id = api.trigger(GENERATE_DAG)
    run = _follow(api, GENERATE_DAG, run_id, timeout)
    if run["state"] != "success" and _task_state(api, GENERATE_DAG, run_id, "report_posts") != "failed":
        _say(f"{GENERATE_DAG} ended {run['state']}: see the Airflow UI or {settings.home / 'logs'}")
        return 1
    print_posts(settings)
    return 0


def print_posts(settings: Settings) -> None:
    """Every post of the configured topics as written (front matter and sources), then the quality gate's count.

    Posts the gate sent to review are written and flagged, not an error of the command: it names them and why.
    """
    from genai_pipeline.steps.contracts import TopicsRequest
    from genai_pipeline.steps.generation import GenerationError, output_store, report_posts, slug, topics_of

    store = output_store(settings)
    request = TopicsRequest(run_id="demo", topics=[], k=1, threshold=1)
    for topic in topics_of(settings, request):
        name = f"{slug(topic)}.md"
        print(f"\n==> {store.path(name)}\n")
        print(store.read_bytes(name).decode())
    try:
        summary = report_posts(settings, request)
    except GenerationError as error:
        _say(str(error))
        return
    _say(summary.line())
    for post in summary.posts:
        if post["status"] == "needs_review":
            _say(f"  needs review: {post['path']} ({'; '.join(post['reasons'])})")


def _task_state(api, dag_id: str, run_id: str, task_id: str) -> str | None:
    return next((t["state"] for t in api.task_instances(dag_id, run_id) if t["task_id"] == task_id), None)


def _fine_tuning_summary(settings: Settings, champion_run: str) -> dict[str, Any]:
    from genai_pipeline.steps import finetune_store as layout
    from genai_pipeline.store import Store

    store = Store(settings.store)
    decision = store.read_json(layout.decision(layout.safe_name(champion_run)))
    challenger = decision["challenger"]
    return {
        "decision": decision,
        "metrics": store.read_json(challenger["metrics_key"]),
        "paths": {name: store.path(challenger[f"{name}_key"]) for name in ("plot", "metrics", "lineage")},
        "champion": store.read_json(layout.CHAMPION),
        "champion_path": store.path(layout.CHAMPION),
    }


def print_fine_tuning_summary(summary: dict[str, Any]) -> None:
    """The job, its curves, both models' scores on the held-out set and the decision."""
    decision, metrics, paths = summary["decision"], summary["metrics"], summary["paths"]
    model = decision["challenger"]["model"]

    def scores(item: dict[str, Any] | None) -> str:
        if item is None:
            return "none yet"
        return (
            f"score {item['score']:.3f} = fact coverage {item['fact_coverage']:.2f}, citations "
            f"{item['citation_share']:.2f}, groundedness {item['groundedness']:.2f}; answer F1 "
            f"{item['answer_token_f1']:.3f} ({item['model']})"
        )

    lines = [
        f"Fine-tuning job {decision['challenger']['job_id']} -> {model}",
        f"  steps            {metrics['steps']}  (train loss {metrics['first_train_loss']} -> "
        f"{metrics['final_train_loss']}, validation loss {metrics['final_valid_loss']}, "
        f"token accuracy {metrics['final_valid_mean_token_accuracy']})",
        f"  plot             {paths['plot']}",
        f"  metrics          {paths['metrics']}",
        f"  lineage          {paths['lineage']}  (pipeline lineage {model})",
        f"  held-out set     {decision['challenger_scores']['items']} prompts",
        f"  challenger       {scores(decision['challenger_scores'])}",
        f"  champion before  {scores(decision['champion_scores'])}",
        f"  decision         {decision['decision']}: {decision['reason']}",
        f"  champion now     {summary['champion']['model']}  ({summary['champion_path']})",
    ]
    print("\n".join(lines))


def cmd_generate(args: argparse.Namespace) -> int:
    """Write one post about a topic from the knowledge base and the champion model, and print it with its sources.

    Needs the knowledge base (``pipeline demo`` or ``pipeline ingest`` first); Weaviate and, with no hosted API,
    the local model server are started for the call when they are not running, and stopped again.
    """
    from genai_pipeline.clients.weaviate import WeaviateUnavailable
    from genai_pipeline.local.model_server import start_model_server
    from genai_pipeline.local.weaviate_server import start_weaviate
    from genai_pipeline.steps.generation import GenerationError, write_post

    settings = get_settings()
    gen = settings.generation
    services = _services(settings)
    started = []
    try:
        if services.pid("weaviate") is None:
            start_weaviate(settings, services)
            started.append("weaviate")
        if settings.openai.base_url is None and services.pid("model-server") is None:
            start_model_server(settings, services)
            started.append("model-server")
        result = write_post(
            settings,
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


def print_post(result: dict[str, Any]) -> None:
    """A generated post, then the model, its sources and the usage."""
    usage = result["usage"]
    quality = result["quality"] or {}
    verdict = result["status"] + (f": {'; '.join(quality['reasons'])}" if quality.get("reasons") else "")
    lines = [
        result["post"],
        "",
        f"-- quality gate: {verdict}"
        + (
            f" ({quality['supported_share']:.0%} of {quality['sentences']} sentences supported, "
            f"{quality['repetitions_removed']} repetitions and {quality['uncited_removed']} uncited sentences "
            f"removed, {quality['citations_repaired']} citations repaired)"
            if quality
            else ""
        ),
        f"-- {result['model']} ({result['model_role']}), template {result['template']}, "
        f"{usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion tokens, {result['seconds']} s",
        "Sources:",
        *(
            f"  [{s['n']}] {s['title']} / {s['section'] or '(top)'}  {s['uri']} chunk {s['chunk_index']} "
            f"(distance {s['distance']})"
            for s in result["sources"]
        ),
    ]
    print("\n".join(lines))


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


def model_manifest_text(manifest: dict) -> str:
    """A model's lineage manifest: job, base model, hyperparameters, dataset, runs and example files."""
    data = manifest["dataset"]
    lines = [
        f"{manifest['model']}",
        f"  job              {manifest['job_id']} (submission key {manifest['submission_key']})",
        f"  base model       {manifest['base_model']}",
        "  hyperparameters  " + ", ".join(f"{k}={v}" for k, v in sorted(manifest["hyperparameters"].items())),
        f"  dataset          {data['key']}: train {data['train_examples']} examples (sha256 {data['train_sha256']}), "
        f"validation {data['validation_examples']} (sha256 {data['validation_sha256']})",
        "  runs             " + ", ".join(f"{dag} {run}" for dag, run in manifest["runs"].items()),
        f"  example files    {len(manifest['examples'])} (the documents that trained it and validated it):",
        *(f"    {e['split']:<10} {e['file']}  sha256 {e['sha256']}" for e in manifest["examples"]),
    ]
    return "\n".join(lines)


def cmd_ingest(args: argparse.Namespace) -> int:
    """Ingest your own folders or fsspec URLs through the real Airflow stack, as ``demo`` does."""
    sources = ingest_sources(args.paths, args.source)
    conf = {
        "sources": sources,
        "dry_run": args.dry_run,
        "allow_mass_prune": args.allow_mass_prune,
        "prune_removed_sources": args.prune_removed_sources,
    }
    for name, root in sources.items():
        _say(f"source {name}: {root}")
    ingest = get_settings().ingest
    if _services(get_settings()).pid("airflow-scheduler") is not None:
        _say("Airflow is running already: it reads only the folders allowed when it started (`pipeline down` first)")
    # The stack this command starts may read the folders its user named, besides what the operator allowed.
    allowed = [*(ingest.allowed_roots or ingest.sources.values()), *sources.values()]
    os.environ["PIPELINE_INGEST__ALLOWED_ROOTS"] = json.dumps(allowed)
    cmd_up(args)
    settings = get_settings()
    try:
        api = _api_with_dags(args.api_port)
        run_id = api.trigger(INGEST_DAG, conf)
        _say(f"triggered {INGEST_DAG} ({run_id}){' as a dry run: nothing is written' if args.dry_run else ''}")
        return _finish(settings, _follow(api, INGEST_DAG, run_id, args.timeout))
    finally:
        if not args.keep_running:
            _stop_stack(settings)


INGEST_DAG = "ingest_knowledge_base"


def ingest_sources(paths: list[str], named: list[str]) -> dict[str, str]:
    """Source name -> absolute path or URL, from positional paths (named after their folder) and NAME=PATH."""
    sources: dict[str, str] = {}
    for item in named:
        name, sep, root = item.partition("=")
        if not sep or not name or not root:
            raise SystemExit(f"pipeline ingest: --source takes NAME=PATH, got {item!r}")
        sources[name] = _absolute(root)
    for path in paths:
        stem = re.sub(r"[^A-Za-z0-9_-]", "-", path.rstrip("/").rsplit("/", 1)[-1]).strip("-") or "docs"
        name, n = stem, 2
        while name in sources:
            name, n = f"{stem}-{n}", n + 1
        sources[name] = _absolute(path)
    if not sources:
        raise SystemExit("pipeline ingest: give at least one PATH or --source NAME=PATH")
    from genai_pipeline.config import check_sources

    try:
        return check_sources(sources)  # names checked as the settings check them
    except ValueError as error:
        raise SystemExit(f"pipeline ingest: {error}") from None


def _absolute(root: str) -> str:
    return root if "://" in root else str(Path(root).expanduser().resolve())


def _api_with_dags(port: int):
    from genai_pipeline.airflow_api import AirflowAPI

    api = AirflowAPI(port)
    _wait(lambda: all(api.dag_loaded(d) for d in ("start", INGEST_DAG)), 180, "DAGs parsed")
    return api


def _follow(api, dag_id: str, run_id: str, stall_timeout: float) -> dict[str, Any]:
    """Follow one run with a progress bar until it ends; give up only after ``stall_timeout`` without progress.

    A big corpus takes as long as it takes: the deadline moves whenever a task instance changes state, and
    while one is deferred.
    """
    from tqdm import tqdm

    with tqdm(total=1, unit="task", desc=dag_id, dynamic_ncols=True) as bar:
        last_change, seen = time.monotonic(), None
        while True:
            tis = api.task_instances(dag_id, run_id)
            states = sorted((t["task_id"], t["map_index"], t["state"] or "") for t in tis)
            # A deferred task waits on something with its own limits (a fine-tuning job's step and time caps).
            if states != seen or any(t["state"] == "deferred" for t in tis):
                last_change, seen = time.monotonic(), states
            done = [t for t in tis if t["state"] in ("success", "skipped", "failed", "upstream_failed", "removed")]
            bar.total = max(len(tis), 1)
            bar.n = len(done)
            bar.set_postfix_str(", ".join(_ti_name(t) for t in tis if t["state"] == "running")[:60])
            bar.refresh()
            run = api.run(dag_id, run_id)
            if run["state"] in ("success", "failed"):
                return run
            if time.monotonic() - last_change > stall_timeout:
                raise TimeoutError(f"{dag_id} run {run_id} made no progress for {stall_timeout:.0f}s")
            time.sleep(2)


def _finish(settings: Settings, run: dict[str, Any]) -> int:
    """Print the run's summary; exit code 0 only for a successful run."""
    print_summary(_summary_for(settings, run))
    if run["state"] != "success":
        _say(f"{INGEST_DAG} ended {run['state']}: see the Airflow UI or {settings.home / 'logs'}")
        return 1
    return 0


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
    """The human summary of one ingestion run (every list whole: it is read from the stored report)."""
    if "documents" not in summary:
        print(f"Ingestion run {summary.get('run_key')} ended {summary.get('state')} before its report")
        return
    steps = summary.get("step_seconds", {})
    dry = summary.get("dry_run")
    lines = [
        f"Ingestion run {summary['run_key']} into {summary['collection']} ({summary['model']})"
        + ("  DRY RUN: nothing was written" if dry else ""),
        f"  documents        {summary['documents']}",
        f"  {'would ingest' if dry else 'ingested':<17}{summary['to_ingest'] if dry else summary['ingested']}"
        f"  ({summary['batches']} batches)",
        f"  skipped          {summary['skipped_unchanged']} unchanged",
        f"  {'would remove' if dry else 'removed':<17}"
        + (
            f"{len(summary['removed'])} documents"
            if dry
            else f"{summary['removed_documents']} documents ({summary['removed_chunks']} chunks)"
        ),
        f"  chunks written   {summary['chunks']}  (stale deleted: {summary['stale_chunks_deleted']})",
        f"  embedding calls  {summary['embed_calls']}",
        f"  time             {summary['seconds']} s  ({summary['docs_per_s']} docs/s, "
        f"{summary['chunks_per_s']} chunks/s)",
        "  time by step     "
        + ", ".join(
            f"{step} {steps[step]:.1f} s" for step in ("plan", "chunk", "embed", "load", "prune") if step in steps
        ),
        f"  longest batch    {summary['longest_batch_seconds']} s (mean {summary['mean_batch_seconds']} s)",
        *(
            f"  UNAVAILABLE      {u['source']}: {u['reason']} ({u['kept_documents']} stored documents kept)"
            for u in summary["unavailable_sources"]
        ),
        *(
            f"  PRUNE REFUSED    {r['source']}: would remove {r['would_remove']} of {r['stored']} documents "
            f"({r['share']:.0%}); nothing deleted (--allow-mass-prune if they are really gone)"
            for r in summary["prune_refused"]
        ),
        *(f"  FAILED BATCH     {b}" for b in summary["failed_batches"]),
        *(
            f"  not configured   {name}: {count} stored documents kept (--prune-removed-sources to remove)"
            for name, count in summary["unconfigured_sources"].items()
        ),
        *(f"  decoded          {d['uri']} from {d['encoding']}" for d in summary["decoded"]),
        f"  hidden skipped   {len(summary['hidden_skipped'])}",
        *(f"  hard link        {uri} (another name shares its bytes)" for uri in summary["hard_links"]),
        f"  stale            {len(summary['stale'])}",
        *(f"    ! {uri}: stale: previous version kept (the file is refused now)" for uri in summary["stale"]),
        f"  rejected         {len(summary['rejected'])}",
        *(f"    - {r['uri']}: {r['reason']}" for r in summary["rejected"]),
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


def _stack_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--api-port", type=int, default=8080)
    command.add_argument("--web-port", type=int, default=8090, help="the post-writing web page")
    command.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds without progress")
    command.add_argument("--keep-running", action="store_true", help="leave the services up afterwards")


def build_parser() -> argparse.ArgumentParser:
    """Argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="pipeline", description=__doc__.splitlines()[0])
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


if __name__ == "__main__":
    raise SystemExit(main())
