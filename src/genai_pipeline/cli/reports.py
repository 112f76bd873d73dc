"""What the commands print: an ingestion run's summary, the fine-tuning outcome, posts and lineage manifests."""

from __future__ import annotations

from typing import Any

from genai_pipeline.cli.stack import say
from genai_pipeline.config import Settings


def print_posts(settings: Settings) -> None:
    """Every post of the configured topics as written (front matter and sources), then the quality gate's count.

    Posts the gate sent to review are written and flagged, not an error of the command: it names them and why.
    """
    from genai_pipeline.clients.context import service_context
    from genai_pipeline.steps.contracts import TopicsRequest
    from genai_pipeline.steps.generation import GenerationError, output_store, report_posts, slug, topics_of

    store = output_store(settings)
    request = TopicsRequest(run_id="demo", topics=[], k=1, threshold=1)
    for topic in topics_of(settings, request):
        name = f"{slug(topic)}.md"
        print(f"\n==> {store.path(name)}\n")
        print(store.read_bytes(name).decode())
    try:
        summary = report_posts(service_context(settings), request)
    except GenerationError as error:
        say(str(error))
        return
    say(summary.line())
    for post in summary.posts:
        if post["status"] == "needs_review":
            say(f"  needs review: {post['path']} ({'; '.join(post['reasons'])})")


def fine_tuning_summary(settings: Settings, champion_run: str) -> dict[str, Any]:
    from genai_pipeline.steps import finetune_store as layout
    from genai_pipeline.steps.keys import safe_name
    from genai_pipeline.store import Store

    store = Store(settings.store)
    decision = store.read_json(layout.decision(safe_name(champion_run)))
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


def ti_name(ti: dict[str, Any]) -> str:
    if ti["map_index"] < 0:
        return ti["task_id"]
    return f"{ti['task_id']} {ti.get('rendered_map_index') or ti['map_index']}"


def summary_for(settings: Settings, run: dict[str, Any]) -> dict[str, Any]:
    """The stored report of an ingestion run, or its state when it ended before writing one."""
    from genai_pipeline.steps import ingest_store
    from genai_pipeline.store import Store

    store = Store(settings.store)
    key = ingest_store.report(ingest_store.run_key_for(run["dag_run_id"]))
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
