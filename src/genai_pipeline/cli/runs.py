"""Runs through the local Airflow stack: the demo and ingestion, each DAG run followed with a progress bar."""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from genai_pipeline.cli.reports import (
    fine_tuning_summary,
    print_fine_tuning_summary,
    print_posts,
    print_summary,
    summary_for,
    ti_name,
)
from genai_pipeline.cli.stack import cmd_up, local_services, say, stop_stack, wait
from genai_pipeline.config import Settings, get_settings
from genai_pipeline.steps.decisions import FineTuneTask

INGEST_DAG = "ingest_knowledge_base"
GENERATE_DAG = "generate_content"


# Each DAG of the fine-tuning path is started by the Asset events of the one before.
FINE_TUNING_CHAIN = ("format_examples", "evaluate_examples", "fine_tune", "champion_challenger")


def cmd_demo(args: argparse.Namespace) -> int:
    """Bring the stack up, trigger ``start``, follow ingestion and the fine-tuning chain its Asset events cause."""
    cmd_up(args)
    settings = get_settings()
    try:
        api = api_with_dags(args.api_port)
        start_run = api.trigger("start")
        say(f"triggered start ({start_run}); following the runs its Asset events cause")
        run_id = wait(lambda: api.run_caused_by(INGEST_DAG, "start", start_run), args.timeout, "the ingestion run")
        ingested = finish(settings, follow(api, INGEST_DAG, run_id, args.timeout))
        return max(ingested, _follow_fine_tuning(api, settings, start_run, args.timeout))
    finally:
        if not args.keep_running:
            stop_stack(settings)


def _follow_fine_tuning(api, settings: Settings, start_run: str, timeout: float) -> int:
    """Follow examples -> gate -> fine-tune -> champion/challenger by Asset events, then print what came of it."""
    source_dag, source_run = "start", start_run
    for dag_id in FINE_TUNING_CHAIN:
        run_id = wait(
            lambda d=dag_id, sd=source_dag, sr=source_run: api.run_caused_by(d, sd, sr), timeout, f"the {dag_id} run"
        )
        run = follow(api, dag_id, run_id, timeout)
        if run["state"] != "success":
            say(f"{dag_id} ended {run['state']}: see the Airflow UI or {settings.home / 'logs'}")
            return 1
        if dag_id == "evaluate_examples" and task_state(api, dag_id, run_id, FineTuneTask.OVER_BUDGET) == "success":
            say("the cost gate stopped fine-tuning: the estimate is over budget (see the over_budget task's log)")
            return 0
        source_dag, source_run = dag_id, run_id
    print_fine_tuning_summary(fine_tuning_summary(settings, source_run))
    return _follow_generation(api, settings, source_run, timeout)


def _follow_generation(api, settings: Settings, champion_run: str, timeout: float) -> int:
    """The posts: from the run a promotion triggered, else (the champion stayed) from a run started here."""
    promoted = task_state(api, "champion_challenger", champion_run, FineTuneTask.PROMOTE_CHALLENGER) == "success"
    if promoted and settings.generation.regenerate_on_champion:
        run_id = wait(
            lambda: api.run_caused_by(GENERATE_DAG, "champion_challenger", champion_run), timeout, "the generation run"
        )
    else:
        run_id = api.trigger(GENERATE_DAG)
    run = follow(api, GENERATE_DAG, run_id, timeout)
    if run["state"] != "success" and task_state(api, GENERATE_DAG, run_id, "report_posts") != "failed":
        say(f"{GENERATE_DAG} ended {run['state']}: see the Airflow UI or {settings.home / 'logs'}")
        return 1
    print_posts(settings)
    return 0


def task_state(api, dag_id: str, run_id: str, task_id: str) -> str | None:
    return next((t["state"] for t in api.task_instances(dag_id, run_id) if t["task_id"] == task_id), None)


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
        say(f"source {name}: {root}")
    configured = get_settings()
    if local_services(configured).pid("airflow-scheduler") is not None:
        say("Airflow is running already: it reads only the folders allowed when it started (`pipeline down` first)")
    # The stack this command starts may read the folders its user named, besides what the operator allowed.
    allowed = [*configured.ingest.run_roots, *sources.values()]
    os.environ["PIPELINE_INGEST__ALLOWED_ROOTS"] = json.dumps(allowed)
    cmd_up(args)
    settings = get_settings()
    try:
        api = api_with_dags(args.api_port)
        run_id = api.trigger(INGEST_DAG, conf)
        say(f"triggered {INGEST_DAG} ({run_id}){' as a dry run: nothing is written' if args.dry_run else ''}")
        return finish(settings, follow(api, INGEST_DAG, run_id, args.timeout))
    finally:
        if not args.keep_running:
            stop_stack(settings)


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


def follow(api, dag_id: str, run_id: str, stall_timeout: float) -> dict[str, Any]:
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
            bar.set_postfix_str(", ".join(ti_name(t) for t in tis if t["state"] == "running")[:60])
            bar.refresh()
            run = api.run(dag_id, run_id)
            if run["state"] in ("success", "failed"):
                return run
            if time.monotonic() - last_change > stall_timeout:
                raise TimeoutError(f"{dag_id} run {run_id} made no progress for {stall_timeout:.0f}s")
            time.sleep(2)


def finish(settings: Settings, run: dict[str, Any]) -> int:
    """Print the run's summary; exit code 0 only for a successful run."""
    print_summary(summary_for(settings, run))
    if run["state"] != "success":
        say(f"{INGEST_DAG} ended {run['state']}: see the Airflow UI or {settings.home / 'logs'}")
        return 1
    return 0


def api_with_dags(port: int):
    from genai_pipeline.airflow_api import AirflowAPI

    api = AirflowAPI(port)
    wait(lambda: all(api.dag_loaded(d) for d in ("start", INGEST_DAG)), 180, "DAGs parsed")
    return api
