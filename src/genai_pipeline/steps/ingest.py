"""The knowledge-base ingestion steps: plan → chunk → embed → load per batch, then prune and report.

Each step takes one typed descriptor (:mod:`genai_pipeline.steps.contracts`) and returns one; bulk data
(batch manifests, chunks, vectors, long lists) lives in the shared store under ``ingest/<run_key>/``.
Within a batch every step streams in sub-batches of ``ingest.sub_batch_chunks`` chunks, so its memory
depends on that setting, not on the batch. Nothing here imports Airflow, so the same functions run in the
Airflow worker (embedded mode) and in a step image (cluster mode).

Steps reach the knowledge base, the embedder and the store through their context
(:class:`~genai_pipeline.steps.context.StepContext`); the Weaviate client behind it is imported only when a step
opens the knowledge base (chunk and embed never do).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath
from typing import Any

from genai_pipeline.config import Settings
from genai_pipeline.models.embeddings import make_token_counter
from genai_pipeline.models.tokens import TokenSpans
from genai_pipeline.steps import ingest_store as layout
from genai_pipeline.steps import lineage, planning
from genai_pipeline.steps import load as loader
from genai_pipeline.steps.chunk import Chunk, chunk_text
from genai_pipeline.steps.context import StepContext
from genai_pipeline.steps.contracts import (
    BatchTask,
    Chunked,
    Cleaned,
    Embedded,
    Empty,
    Loaded,
    Pruned,
    RunReport,
    RunRequest,
    SchemaResult,
    Summary,
)
from genai_pipeline.steps.documents import (
    Document,
    DocumentRejected,
    document_title,
    outside_roots,
    read_document,
    scan_source,
)
from genai_pipeline.steps.text_formats import structured_by_headings, to_markdown
from genai_pipeline.store import Store

log = logging.getLogger(__name__)


def create_schema(ctx: StepContext, _: Empty) -> SchemaResult:
    """Create the collection from the schema in code if it is missing; report which happened."""
    with ctx.knowledge_base() as kb:
        created = kb.ensure(loader.embedding_model_id(ctx.settings))
    return SchemaResult(collection=ctx.settings.weaviate.collection, created=created)


def plan(ctx: StepContext, request: RunRequest) -> list[BatchTask]:
    """Scan every source, skip documents already loaded whole, decide what is proven gone, cut batches.

    Returns one small descriptor per batch (none on a dry run); the full plan goes to the store.
    """
    settings, store = ctx.settings, ctx.store
    started = time.time()
    run_key = layout.run_key_for(request.run_id)
    run = layout.RunRecord(store, run_key)
    _remove_abandoned_runs(store, run_key)
    store.remove(layout.record(run_key))  # a re-run of the plan starts the run's record over
    remove_old_records(store, keep=settings.ingest.run_records_kept - 1)
    sources = request.options.sources or settings.ingest.sources
    model = loader.embedding_model_id(settings)
    documents: list[Document] = []
    rejected: list[dict[str, str]] = []
    aliases: list[str] = []
    hidden: list[str] = []
    hard_links: list[str] = []
    unavailable = outside_roots(request.options.sources or {}, settings.ingest.run_roots)
    for name, root in sources.items():
        if name in unavailable:
            continue
        try:
            scan = scan_source(
                name,
                root,
                max_bytes=settings.ingest.max_document_bytes,
                refuse_hard_links=settings.ingest.refuse_hard_links,
            )
        except OSError as error:  # an unreachable bucket, a permission denied on the root
            unavailable[name] = f"unreadable: {error}"
            continue
        documents.extend(scan.documents)
        rejected.extend({"uri": r.uri, "reason": r.reason} for r in scan.rejected)
        aliases.extend(scan.aliases)
        hidden.extend(scan.hidden)
        hard_links.extend(scan.hard_links)
        if not scan.documents:
            folder = [r.reason for r in scan.rejected if r.uri == f"{name}/"]
            unavailable[name] = folder[0] if folder else "it lists no usable document"
    for rejection in rejected:
        log.warning("rejected %s: %s", rejection["uri"], rejection["reason"])

    with ctx.knowledge_base() as kb:
        stored = kb.stored_documents()
    changed: list[tuple[Document, str]] = []
    for document in documents:
        wanted = loader.fingerprint(
            document.content_hash,
            model=model,
            size=settings.chunking.size_tokens,
            overlap=settings.chunking.overlap_tokens,
        )
        held = stored.get(document.uri)
        if held is None or not held.complete(wanted):
            changed.append((document, wanted))
    decision = planning.decide_removals(
        set(stored),
        sources=set(sources),
        unavailable=set(unavailable),
        present={d.uri for d in documents} | set(aliases),
        rejected={r["uri"] for r in rejected},
        delete_rejected=settings.ingest.delete_rejected,
        max_share=settings.ingest.max_prune_share,
        allow_mass_prune=request.options.allow_mass_prune,
        prune_removed_sources=request.options.prune_removed_sources,
    )
    kept = {name: sum(1 for uri in stored if planning.source_of(uri) == name) for name in unavailable}
    for name, reason in sorted(unavailable.items()):
        log.error("source %s gave no documents (%s): its %d stored documents are kept", name, reason, kept[name])

    groups = planning.cut_batches(changed, max_bytes=settings.ingest.batch_bytes, max_docs=settings.ingest.batch_docs)
    if request.options.dry_run:
        groups = []
    batches = []
    for index, group in enumerate(groups):
        run.write_manifest(index, group)
        first = group[0]
        where = first.document.uri + (f" (part {first.part + 1}/{first.parts})" if first.parts > 1 else "")
        batches.append(
            BatchTask(
                run_key=run_key,
                batch=index,
                docs=len(group),
                bytes=sum(entry.share for entry in group),
                label=f"batch {index + 1}/{len(groups)}: {len(group)} docs from {where}"[:200],
            )
        )
    run.write_plan(
        layout.RunPlan(
            started_at=started,
            plan_seconds=round(time.time() - started, 3),
            dry_run=request.options.dry_run,
            sources=dict(sources),
            documents=len(documents),
            changed=len(changed),
            unchanged=len(documents) - len(changed),
            decoded=sorted(
                ({"uri": d.uri, "encoding": d.encoding} for d in documents if d.encoding != "utf-8"),
                key=lambda item: item["uri"],
            ),
            rejected=rejected,
            aliases=aliases,
            hidden=hidden,
            hard_links=hard_links,
            removed=decision.removed,
            prune_refused=decision.refused,
            unconfigured_sources=decision.unconfigured,
            stale=decision.stale,
            unavailable_sources=[
                {"source": name, "reason": reason, "kept_documents": kept[name]}
                for name, reason in sorted(unavailable.items())
            ],
            batches=len(batches),
            model=model,
        )
    )
    log.info(
        "plan: %d documents, %d to ingest in %d batches, %d unchanged, %d rejected, %d to remove%s",
        len(documents),
        len(changed),
        len(groups),
        len(documents) - len(changed),
        len(rejected),
        len(decision.removed),
        " (dry run: nothing is written)" if request.options.dry_run else "",
    )
    return batches


def cleanup(ctx: StepContext, request: RunRequest) -> Cleaned:
    """The run's teardown: remove its temporary keys, whatever happened to the work (also a failed plan)."""
    store = ctx.store
    run_key = layout.run_key_for(request.run_id)
    removed = store.count(layout.bulk(run_key))
    store.remove(layout.bulk(run_key))
    log.info("cleanup: removed %d temporary files of run %s", removed, run_key)
    return Cleaned(run_key=run_key, removed_files=removed)


def _remove_abandoned_runs(store: Store, run_key: str) -> None:
    """Drop the bulk files of earlier runs that never reached their report (one run at a time: they are dead)."""
    for key in store.keys(layout.BULK_ROOT):
        if key != run_key:
            log.info("removing the bulk files of the unfinished run %s", key)
            store.remove(layout.bulk(key))


def remove_old_records(store: Store, keep: int) -> None:
    """Keep the records of the ``keep`` most recent runs (by their plan's start); drop the rest."""
    started = {}
    for key in store.keys(layout.RUN_RECORDS):
        run = layout.RunRecord(store, key)
        started[key] = run.plan().started_at if run.has_plan() else 0.0
    for key in sorted(started, key=started.__getitem__, reverse=True)[keep:]:
        store.remove(layout.record(key))


def chunk(ctx: StepContext, task: BatchTask) -> Chunked:
    """Chunk every document of a batch with the embedding model's tokenizer, streaming chunks to the store."""
    started = time.perf_counter()
    settings, store = ctx.settings, ctx.store
    run = layout.RunRecord(store, task.run_key)
    roots = run.plan().sources
    entries = run.manifest(task.batch)
    tokens = make_token_counter(settings)
    rejected: list[dict[str, str]] = []

    def rows() -> Iterator[dict[str, object]]:
        for entry in entries:
            document = entry.document
            try:
                text = read_document(document, roots[document.source], max_bytes=settings.ingest.max_document_bytes)
                chunks = chunk_document(settings, tokens, document, text)
            except (DocumentRejected, OSError) as error:
                # Changed or vanished since planning: reported, and the rest of the batch goes on.
                if entry.part == 0:
                    rejected.append({"uri": document.uri, "reason": str(error)})
                continue
            for piece in chunks[entry.part :: entry.parts]:
                yield {**piece.to_dict(), "fingerprint": entry.fingerprint, "encoding": document.encoding}

    chunks_key = layout.batch(task.run_key, "chunks", task.batch, ".jsonl")
    written = store.write_jsonl(chunks_key, rows())
    run.write_late(task.batch, rejected)
    documents = lineage.bounded(
        (lineage.document(roots, e.document.uri) for e in entries),
        folders=(lineage.location(roots[e.document.source]) for e in entries),
    )
    return Chunked(
        **task.model_dump(),
        chunks=written,
        late_rejected=len(rejected),
        chunk_seconds=round(time.perf_counter() - started, 3),
        lineage=lineage.lineage(documents, [lineage.store_file(settings, chunks_key)]),
    )


def chunk_document(settings: Settings, tokens: TokenSpans, document: Document, text: str) -> list[Chunk]:
    """One document's chunks with the configured size and overlap (HTML and RST as Markdown first)."""
    suffix = PurePosixPath(document.relpath).suffix.lower()
    text = to_markdown(text, suffix)
    return chunk_text(
        text,
        source_uri=document.uri,
        title=document_title(text, document.relpath),
        markdown=structured_by_headings(suffix),
        tokens=tokens,
        size=settings.chunking.size_tokens,
        overlap=settings.chunking.overlap_tokens,
    )


def source_chunks(settings: Settings, sources: dict[str, str]) -> Iterator[tuple[Document, list[Chunk]]]:
    """Every usable document of the sources with its chunks, in this process: what a run would load.

    The reference the benchmarks and tests compare a run against (same reading and chunking code).
    """
    tokens = make_token_counter(settings)
    cap = settings.ingest.max_document_bytes
    for name, root in sources.items():
        for document in scan_source(name, root, max_bytes=cap).documents:
            try:
                text = read_document(document, root, max_bytes=cap)
                yield document, chunk_document(settings, tokens, document, text)
            except DocumentRejected:  # e.g. markup with no text: the chunk step refuses it too
                continue


def _sub_batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(rows)
    while group := list(itertools.islice(iterator, size)):
        yield group


def embed(ctx: StepContext, task: Chunked) -> Embedded:
    """Embed a batch's chunks a sub-batch at a time; the call count proves unchanged documents cost nothing."""
    settings, store = ctx.settings, ctx.store
    chunks_key = _chunks_present(ctx, task)
    rows = store.iter_jsonl(chunks_key)
    vectors_key = layout.batch(task.run_key, "vectors", task.batch)
    embedder = ctx.embedder
    calls_before = embedder.calls
    seconds = 0.0
    for part, group in enumerate(_sub_batches(rows, settings.ingest.sub_batch_chunks)):
        started = time.perf_counter()
        vectors = embedder.embed([_embedding_text(row) for row in group])
        seconds += time.perf_counter() - started
        store.write_array(f"{vectors_key}/{part:05d}.npy", vectors)
    return Embedded(
        **task.model_dump(exclude={"lineage"}),
        embed_calls=embedder.calls - calls_before,
        embed_seconds=round(seconds, 3),
        lineage=lineage.lineage(
            [lineage.store_file(settings, chunks_key)], [lineage.store_file(settings, vectors_key)]
        ),
    )


def _chunks_present(ctx: StepContext, task: BatchTask) -> str:
    """The batch's chunk file, chunked again from its manifest if the run's teardown removed it.

    A cleared embed or load of a finished run runs after ``cleanup`` took the bulk files; the run's record
    still names the batch's documents, and chunking is deterministic, so the same chunks come back.
    """
    key = layout.batch(task.run_key, "chunks", task.batch, ".jsonl")
    if not ctx.store.exists(key):
        log.info(
            "batch %d: its chunks are gone (the run's teardown ran before this re-run): chunking again", task.batch
        )
        chunk(ctx, BatchTask(**task.model_dump(include=set(BatchTask.model_fields))))
    return key


def _embedding_text(row: dict[str, Any]) -> str:
    return f"{row['section']}\n{row['text']}" if row["section"] else str(row["text"])


def load(ctx: StepContext, task: Embedded) -> Loaded:
    """Upsert a batch's chunks a sub-batch at a time, then delete the stale chunks of the documents it replaced."""
    started = time.perf_counter()
    settings, store = ctx.settings, ctx.store
    chunks_key = _chunks_present(ctx, task)
    vector_parts = layout.batch(task.run_key, "vectors", task.batch)
    if not store.count(vector_parts):
        log.info(
            "batch %d: its vectors are gone (the run's teardown ran before this re-run): embedding again", task.batch
        )
        embed(ctx, Chunked(**task.model_dump(include=set(Chunked.model_fields))))
    rows = store.iter_jsonl(chunks_key)
    latest: dict[str, str] = {}
    written = 0
    with ctx.knowledge_base() as kb:
        for part, group in enumerate(_sub_batches(rows, settings.ingest.sub_batch_chunks)):
            written += kb.upsert(group, store.read_array(f"{vector_parts}/{part:05d}.npy"))
            latest.update((str(row["source_uri"]), str(row["fingerprint"])) for row in group)
        if written != task.chunks:
            raise RuntimeError(f"batch {task.batch}: {written} chunks loaded, {task.chunks} were chunked")
        stale = sum(kb.delete_stale(uri, fp) for uri, fp in latest.items())
    result = Loaded(
        **task.model_dump(exclude={"lineage"}),
        written=written,
        stale_deleted=stale,
        load_seconds=round(time.perf_counter() - started, 3),
        lineage=lineage.lineage(
            [lineage.store_file(settings, chunks_key), lineage.store_file(settings, vector_parts)],
            [lineage.collection(settings)],
        ),
    )
    layout.RunRecord(store, task.run_key).write_result(result)
    return result


def prune(ctx: StepContext, request: RunRequest) -> Pruned:
    """Delete the chunks of documents proven gone, and only once every batch of the run has loaded."""
    started = time.perf_counter()
    store = ctx.store
    run = layout.RunRecord(store, layout.run_key_for(request.run_id))
    plan_info = run.plan()
    loaded = run.loaded_batches()
    removed = plan_info.removed
    if plan_info.dry_run:
        result = Pruned(skipped=f"dry run: {len(removed)} documents would be removed")
    elif loaded != plan_info.batches:
        result = Pruned(skipped=f"only {loaded} of {plan_info.batches} batches loaded: nothing is pruned")
    elif not removed:
        result = Pruned()
    else:
        with ctx.knowledge_base() as kb:
            deleted = kb.delete_documents(removed)
        result = Pruned(removed_documents=len(removed), removed_chunks=deleted)
    result = result.model_copy(update={"prune_seconds": round(time.perf_counter() - started, 3)})
    run.write_pruned(result)
    return result


# Entries of each list the report step returns through XCom (the stored report has them all).
XCOM_LIST_CAP = 20
_LISTS = (
    "rejected",
    "decoded",
    "hidden_skipped",
    "hard_links",
    "stale",
    "removed",
    "prune_refused",
    "unavailable_sources",
    "failed_batches",
)


class IngestionError(RuntimeError):
    """Raised by :func:`report` for a run that must end failed; its summary is stored all the same."""


class RejectedDocumentsError(IngestionError):
    """``fail_on_rejected`` is set and documents were refused."""


class SourceUnavailableError(IngestionError):
    """A source gave no documents: the run loaded the rest and pruned none of that source."""


class PruneRefusedError(IngestionError):
    """The run would have deleted more than ``max_prune_share`` of a source; it deleted none of it."""


class BatchesFailedError(IngestionError):
    """Some batches did not load: nothing was pruned, and the next run ingests their documents."""


def report(ctx: StepContext, request: RunRequest) -> Summary:
    """Summarise the run (also a failed one) and store the summary; the ``cleanup`` teardown drops its files."""
    settings = ctx.settings
    run_key = layout.run_key_for(request.run_id)
    run = layout.RunRecord(ctx.store, run_key)
    if not run.has_plan():
        raise IngestionError("the plan step did not finish: nothing was ingested or pruned (see its log)")
    plan_info, results, late, pruned = run.plan(), run.results(), run.late(), run.pruned()
    seconds = max(time.time() - plan_info.started_at, 1e-9)
    batch_seconds = [r.chunk_seconds + r.embed_seconds + r.load_seconds for r in results]
    ingested = 0 if plan_info.dry_run else plan_info.changed - len(late)
    chunks = sum(r.written for r in results)
    summary = RunReport(
        run_key=run_key,
        collection=settings.weaviate.collection,
        model=plan_info.model,
        dry_run=plan_info.dry_run,
        documents=plan_info.documents,
        ingested=ingested,
        to_ingest=plan_info.changed,
        skipped_unchanged=plan_info.unchanged,
        rejected=plan_info.rejected + late,
        decoded=plan_info.decoded,
        symlinks_skipped=len(plan_info.aliases),
        hidden_skipped=plan_info.hidden,
        hard_links=plan_info.hard_links,
        unavailable_sources=plan_info.unavailable_sources,
        unconfigured_sources=plan_info.unconfigured_sources,
        stale=plan_info.stale,
        removed=plan_info.removed,
        prune_refused=plan_info.prune_refused,
        prune_skipped=pruned.skipped,
        removed_documents=pruned.removed_documents,
        removed_chunks=pruned.removed_chunks,
        batches=plan_info.batches,
        failed_batches=sorted(set(range(plan_info.batches)) - {r.batch for r in results}),
        chunks=chunks,
        stale_chunks_deleted=sum(r.stale_deleted for r in results),
        embed_calls=sum(r.embed_calls for r in results),
        embed_seconds=round(sum(r.embed_seconds for r in results), 3),
        step_seconds={
            "plan": plan_info.plan_seconds,
            "chunk": round(sum(r.chunk_seconds for r in results), 3),
            "embed": round(sum(r.embed_seconds for r in results), 3),
            "load": round(sum(r.load_seconds for r in results), 3),
            "prune": pruned.prune_seconds,
        },
        longest_batch_seconds=round(max(batch_seconds, default=0.0), 3),
        mean_batch_seconds=round(sum(batch_seconds) / len(batch_seconds), 3) if batch_seconds else 0.0,
        seconds=round(seconds, 3),
        docs_per_s=round(ingested / seconds, 2),
        chunks_per_s=round(chunks / seconds, 2),
    )
    run.write_report(summary)
    if not summary.dry_run:  # a dry run shows what a run would refuse or fail on, and succeeds
        _raise_for(summary, settings)
    return capped_summary(summary)


def _raise_for(summary: RunReport, settings: Settings) -> None:
    """Raise for what must fail the run, naming every cause and what to do about it."""
    problems: list[tuple[type[IngestionError], str]] = []
    if summary.failed_batches:
        problems.append(
            (
                BatchesFailedError,
                f"{len(summary.failed_batches)} of {summary.batches} batches did not load "
                f"(batches {summary.failed_batches[:10]}): nothing was pruned; the next run ingests them",
            )
        )
    problems.extend(
        (
            SourceUnavailableError,
            f"source {u['source']!r} gave no documents ({u['reason']}): its {u['kept_documents']} stored documents "
            "were kept; restore the source, or drop it from the sources and prune it with --prune-removed-sources",
        )
        for u in summary.unavailable_sources
    )
    problems.extend(
        (
            PruneRefusedError,
            f"source {r['source']!r} would lose {r['would_remove']} of its {r['stored']} documents "
            f"({r['share']:.0%}, over the {settings.ingest.max_prune_share:.0%} guard): none were deleted; "
            "if they really are gone, run again with --allow-mass-prune (conf allow_mass_prune)",
        )
        for r in summary.prune_refused
    )
    if settings.ingest.fail_on_rejected and summary.rejected:
        problems.append(
            (
                RejectedDocumentsError,
                f"{len(summary.rejected)} documents rejected (fail_on_rejected is set): "
                + "; ".join(f"{r['uri']}: {r['reason']}" for r in summary.rejected[:5]),
            )
        )
    if problems:
        raise problems[0][0]("; ".join(message for _, message in problems))


def capped_summary(report: RunReport) -> Summary:
    """The report for XCom: each list cut to its first entries, with every list's full length.

    The stored report keeps every entry; thousands of bad files must not become one huge XCom value.
    """
    whole = report.model_dump()
    capped = {key: value[:XCOM_LIST_CAP] if key in _LISTS else value for key, value in whole.items()}
    return Summary(**capped, totals={key: len(whole[key]) for key in _LISTS})
