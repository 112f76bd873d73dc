"""The knowledge-base ingestion steps: plan → chunk → embed → load per batch, then prune and report.

Each step takes the settings and a small JSON descriptor and returns one; bulk data (batch manifests,
chunks, vectors) lives in the shared store under ``ingest/<run_key>/``. Nothing here imports Airflow, so
the same functions run in the Airflow worker (embedded mode) and in a step image (cluster mode).

The Weaviate client is imported inside the steps that talk to Weaviate: it takes over a second to import,
and every task process pays for what this module imports at the top (chunk and embed never need it).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from genai_pipeline.config import Settings
from genai_pipeline.models.embeddings import make_embedder, make_token_counter
from genai_pipeline.models.tokens import TokenSpans
from genai_pipeline.steps.chunk import Chunk, chunk_text
from genai_pipeline.steps.documents import (
    Document,
    DocumentRejected,
    document_title,
    read_document,
    scan_source,
)
from genai_pipeline.store import Store

log = logging.getLogger(__name__)
Descriptor = dict[str, Any]


def run_key_for(run_id: str) -> str:
    """A store-safe folder name for an Airflow run id."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)


def _prefix(run_key: str, *parts: str) -> str:
    return "/".join(["ingest", run_key, *parts])


def create_schema(settings: Settings, payload: Descriptor) -> Descriptor:
    """Create the collection from the schema in code if it is missing; report which happened."""
    from genai_pipeline.clients.weaviate import collection_exists, create_collection, weaviate_client

    name = settings.weaviate.collection
    with weaviate_client(settings.weaviate) as client:
        if collection_exists(client, name):
            return {"collection": name, "created": False}
        create_collection(client, name)
    return {"collection": name, "created": True}


def plan(settings: Settings, payload: Descriptor) -> list[Descriptor]:
    """Scan every source, skip documents whose fingerprint is already loaded, and cut the rest into batches.

    Returns one small descriptor per batch; the full plan (rejections, removals) goes to the store.
    """
    from genai_pipeline.clients.weaviate import weaviate_client
    from genai_pipeline.steps import load as loader

    started = time.time()
    run_key = run_key_for(payload["run_id"])
    store = Store(settings.store)
    model = embedding_model_id(settings)
    documents: list[Document] = []
    rejected: list[dict[str, str]] = []
    aliases: list[str] = []
    hidden: list[str] = []
    empty: dict[str, str] = {}
    for name, root in settings.ingest.sources.items():
        scan = scan_source(name, root, max_bytes=settings.ingest.max_document_bytes)
        documents.extend(scan.documents)
        rejected.extend({"uri": r.uri, "reason": r.reason} for r in scan.rejected)
        aliases.extend(scan.aliases)
        hidden.extend(scan.hidden)
        if not scan.documents:
            folder = [r.reason for r in scan.rejected if r.uri == f"{name}/"]
            empty[name] = folder[0] if folder else "no usable document in it"
    for rejection in rejected:
        log.warning("rejected %s: %s", rejection["uri"], rejection["reason"])
    for uri in hidden:
        log.info("skipped hidden %s", uri)

    with weaviate_client(settings.weaviate) as client:
        stored = loader.stored_documents(client.collections.get(settings.weaviate.collection))
    changed: list[dict[str, object]] = []
    for document in documents:
        wanted = loader.fingerprint(
            document.content_hash,
            model=model,
            size=settings.chunking.size_tokens,
            overlap=settings.chunking.overlap_tokens,
        )
        held = stored.get(document.uri)
        if held is None or not held.complete(wanted):
            changed.append({**document.to_dict(), "uri": document.uri, "fingerprint": wanted})
    # Refused this time but loaded before: the old version stays searchable, and the report says so.
    still_searchable = sorted(r["uri"] for r in rejected if r["uri"] in stored)
    present = {d.uri for d in documents} | {r["uri"] for r in rejected} | set(aliases)
    removed = removed_documents(stored, present, set(empty))
    unavailable = [
        {"source": name, "reason": reason, "kept_documents": sum(1 for uri in stored if _source_of(uri) == name)}
        for name, reason in sorted(empty.items())
    ]
    for source in unavailable:
        log.error(
            "source %s gave no documents (%s): its %d stored documents are kept, not pruned",
            source["source"],
            source["reason"],
            source["kept_documents"],
        )

    size = settings.ingest.batch_docs
    groups = [changed[i : i + size] for i in range(0, len(changed), size)]
    batches = []
    for index, group in enumerate(groups):
        key = _prefix(run_key, "batches", f"{index:05d}.json")
        store.write_json(key, group)
        batches.append(
            {
                "run_key": run_key,
                "batch": index,
                "docs": len(group),
                "label": f"batch {index + 1}/{len(groups)}: {len(group)} docs from {group[0]['uri']}",
            }
        )
    store.write_json(
        _prefix(run_key, "plan.json"),
        {
            "started_at": started,
            "documents": len(documents),
            "changed": len(changed),
            "unchanged": len(documents) - len(changed),
            "rejected": rejected,
            "aliases": aliases,
            "hidden": hidden,
            "removed": removed,
            "unavailable_sources": unavailable,
            "rejected_still_searchable": still_searchable,
            "batches": len(batches),
            "model": model,
        },
    )
    log.info(
        "plan: %d documents, %d to ingest in %d batches, %d unchanged, %d rejected, %d removed",
        len(documents),
        len(changed),
        len(batches),
        len(documents) - len(changed),
        len(rejected),
        len(removed),
    )
    return batches


def removed_documents(stored: dict[str, object] | set[str], present: set[str], empty_sources: set[str]) -> list[str]:
    """Stored documents that no source holds any more, to prune.

    A source that gave no document at all is left out: a missing folder, a prefix that lists empty or a
    volume that is not mounted all look like that, and must never delete what was loaded from it.
    """
    return sorted(uri for uri in stored if uri not in present and _source_of(uri) not in empty_sources)


def _source_of(uri: str) -> str:
    return uri.split("/", 1)[0]


def chunk(settings: Settings, payload: Descriptor) -> Descriptor:
    """Chunk every document of a batch with the embedding model's tokenizer."""
    store = Store(settings.store)
    run_key, index = payload["run_key"], payload["batch"]
    tokens = make_token_counter(settings)
    rows: list[dict[str, object]] = []
    rejected: list[dict[str, str]] = []
    for entry in store.read_json(_prefix(run_key, "batches", f"{index:05d}.json")):
        document = Document(entry["source"], entry["relpath"], entry["size"], entry["content_hash"])
        root = settings.ingest.sources.get(document.source)
        try:
            if root is None:
                raise DocumentRejected(f"source {document.source!r} is no longer configured")
            text = read_document(document, root, max_bytes=settings.ingest.max_document_bytes)
        except (DocumentRejected, OSError) as error:
            # Changed or vanished since planning: reported, and the rest of the batch goes on.
            rejected.append({"uri": document.uri, "reason": str(error)})
            continue
        rows.extend(
            {**c.to_dict(), "fingerprint": entry["fingerprint"]}
            for c in chunk_document(settings, tokens, document, text)
        )
    store.write_jsonl(_prefix(run_key, "chunks", f"{index:05d}.jsonl"), rows)
    return {**payload, "chunks": len(rows), "late_rejected": rejected}


def chunk_document(settings: Settings, tokens: TokenSpans, document: Document, text: str) -> list[Chunk]:
    """One document's chunks with the configured size and overlap."""
    return chunk_text(
        text,
        source_uri=document.uri,
        title=document_title(text, document.relpath),
        markdown=document.is_markdown,
        tokens=tokens,
        size=settings.chunking.size_tokens,
        overlap=settings.chunking.overlap_tokens,
    )


def embed(settings: Settings, payload: Descriptor) -> Descriptor:
    """Embed a batch's chunks; the call count proves unchanged documents cost no model time."""
    store = Store(settings.store)
    run_key, index = payload["run_key"], payload["batch"]
    rows = store.read_jsonl(_prefix(run_key, "chunks", f"{index:05d}.jsonl"))
    embedder = make_embedder(settings)
    calls_before = embedder.calls
    started = time.perf_counter()
    vectors = embedder.embed([_embedding_text(row) for row in rows])
    seconds = time.perf_counter() - started
    store.write_array(_prefix(run_key, "vectors", f"{index:05d}.npy"), vectors)
    return {**payload, "embed_calls": embedder.calls - calls_before, "embed_seconds": round(seconds, 3)}


def _embedding_text(row: dict[str, Any]) -> str:
    return f"{row['section']}\n{row['text']}" if row["section"] else str(row["text"])


def load(settings: Settings, payload: Descriptor) -> Descriptor:
    """Upsert a batch's chunks, then delete the stale chunks of the documents it replaced."""
    from genai_pipeline.clients.weaviate import weaviate_client
    from genai_pipeline.steps import load as loader

    store = Store(settings.store)
    run_key, index = payload["run_key"], payload["batch"]
    rows = store.read_jsonl(_prefix(run_key, "chunks", f"{index:05d}.jsonl"))
    vectors = store.read_array(_prefix(run_key, "vectors", f"{index:05d}.npy"))
    with weaviate_client(settings.weaviate) as client:
        collection = client.collections.get(settings.weaviate.collection)
        written = loader.upsert_chunks(
            collection,
            rows,
            vectors,
            batch_size=settings.weaviate.batch_size,
            concurrent_requests=settings.weaviate.concurrent_requests,
        )
        latest = {str(row["source_uri"]): str(row["fingerprint"]) for row in rows}
        stale = sum(loader.delete_stale(collection, uri, fp) for uri, fp in latest.items())
    result = {**payload, "written": written, "stale_deleted": stale}
    store.write_json(_prefix(run_key, "results", f"{index:05d}.json"), result)
    return result


def prune(settings: Settings, payload: Descriptor) -> Descriptor:
    """Delete the chunks of documents that are no longer in any source."""
    from genai_pipeline.clients.weaviate import weaviate_client
    from genai_pipeline.steps import load as loader

    removed = Store(settings.store).read_json(_prefix(run_key_for(payload["run_id"]), "plan.json"))["removed"]
    if not removed:
        return {"removed_documents": 0, "removed_chunks": 0}
    with weaviate_client(settings.weaviate) as client:
        deleted = loader.delete_documents(client.collections.get(settings.weaviate.collection), removed)
    return {"removed_documents": len(removed), "removed_chunks": deleted}


# Entries of each list the report step returns through XCom (the stored report has them all).
XCOM_LIST_CAP = 20


class RejectedDocumentsError(RuntimeError):
    """Raised by :func:`report` when ``fail_on_rejected`` is set and documents were refused."""


class SourceUnavailableError(RuntimeError):
    """Raised by :func:`report` when a source gave no documents: the run loaded the rest and pruned none of it."""


def report(settings: Settings, payload: Descriptor) -> Descriptor:
    """Summarise the run, store the summary, and drop the run's bulk files."""
    store = Store(settings.store)
    run_key = run_key_for(payload["run_id"])
    plan_info = store.read_json(_prefix(run_key, "plan.json"))
    results = [store.read_json(_prefix(run_key, "results", key)) for key in store.keys(_prefix(run_key, "results"))]
    late = [r for result in results for r in result.get("late_rejected", [])]
    seconds = max(time.time() - plan_info["started_at"], 1e-9)
    pruned = payload.get("pruned") or {}
    summary = {
        "run_key": run_key,
        "collection": settings.weaviate.collection,
        "model": plan_info["model"],
        "documents": plan_info["documents"],
        "ingested": plan_info["changed"] - len(late),
        "skipped_unchanged": plan_info["unchanged"],
        "rejected": plan_info["rejected"] + late,
        "symlinks_skipped": len(plan_info["aliases"]),
        "hidden_skipped": plan_info["hidden"],
        "unavailable_sources": plan_info["unavailable_sources"],
        "rejected_still_searchable": plan_info["rejected_still_searchable"],
        "removed_documents": pruned.get("removed_documents", 0),
        "removed_chunks": pruned.get("removed_chunks", 0),
        "batches": plan_info["batches"],
        "chunks": sum(r["written"] for r in results),
        "stale_chunks_deleted": sum(r["stale_deleted"] for r in results),
        "embed_calls": sum(r["embed_calls"] for r in results),
        "embed_seconds": round(sum(r["embed_seconds"] for r in results), 3),
        "seconds": round(seconds, 3),
    }
    summary["docs_per_s"] = round(summary["ingested"] / seconds, 2)
    summary["chunks_per_s"] = round(summary["chunks"] / seconds, 2)
    store.write_json(f"reports/ingest/{run_key}.json", summary)
    store.write_json("reports/ingest/latest.json", summary)
    for bulk in ("batches", "chunks", "vectors"):
        store.remove(_prefix(run_key, bulk))
    return _result_or_raise(summary, settings)


def _result_or_raise(summary: Descriptor, settings: Settings) -> Descriptor:
    """Raise for what must fail the run; else the summary with its lists capped, for XCom.

    The stored report keeps every entry; thousands of bad files must not become one huge XCom value.
    """
    if summary["unavailable_sources"]:
        raise SourceUnavailableError(
            "; ".join(
                f"source {u['source']!r} gave no documents ({u['reason']}): its {u['kept_documents']} stored "
                "documents were kept; restore the source, or remove it from PIPELINE_INGEST__SOURCES to prune them"
                for u in summary["unavailable_sources"]
            )
        )
    if settings.ingest.fail_on_rejected and summary["rejected"]:
        raise RejectedDocumentsError(
            f"{len(summary['rejected'])} documents rejected (fail_on_rejected is set): "
            + "; ".join(f"{r['uri']}: {r['reason']}" for r in summary["rejected"][:5])
        )
    capped = dict(summary)
    for key in ("rejected", "hidden_skipped", "rejected_still_searchable"):
        if len(summary[key]) > XCOM_LIST_CAP:
            capped[key] = summary[key][:XCOM_LIST_CAP]
            capped[f"{key}_total"] = len(summary[key])
    return capped


def embedding_model_id(settings: Settings) -> str:
    """Provider and model, as recorded in fingerprints: switching either re-embeds everything."""
    return f"{settings.embedding.provider.value}:{settings.embedding.model}"
