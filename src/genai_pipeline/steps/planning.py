"""The pure decisions of an ingestion plan: how to cut batches, and what may be pruned.

Nothing here reads a file or talks to Weaviate, so every rule that protects stored data is unit-tested
on plain values: a source that gave nothing, a source no longer configured, a refused file that was loaded
before, and a run that would delete more than its share of a source.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field

from genai_pipeline.steps.documents import Document


@dataclass(frozen=True)
class BatchEntry:
    """One document (or one part of a huge one) in a batch manifest; parts take every ``parts``-th chunk."""

    source: str
    relpath: str
    size: int
    content_hash: str
    encoding: str
    fingerprint: str
    part: int = 0
    parts: int = 1

    @property
    def document(self) -> Document:
        """The scanned document this entry reads."""
        return Document(self.source, self.relpath, self.size, self.content_hash, self.encoding)

    @property
    def share(self) -> int:
        """Bytes this entry stands for: a part of a split document weighs its share."""
        return math.ceil(self.size / self.parts)

    def to_dict(self) -> dict[str, object]:
        """JSON form for the batch manifest."""
        return asdict(self)


def cut_batches(documents: list[tuple[Document, str]], *, max_bytes: int, max_docs: int) -> list[list[BatchEntry]]:
    """Cut ``(document, fingerprint)`` pairs into batches of about ``max_bytes`` each.

    Bytes stand for tokens (and so for embedding time): a batch closes before it would pass ``max_bytes`` or
    hold ``max_docs`` documents. A document bigger than ``max_bytes`` is split into parts that go to separate
    batches, so one megabyte changelog never makes one task run for half an hour while the others idle.
    """
    batches: list[list[BatchEntry]] = []
    current: list[BatchEntry] = []
    weight = 0
    for document, fingerprint in documents:
        parts = max(1, math.ceil(document.size / max_bytes))
        for part in range(parts):
            entry = BatchEntry(
                document.source,
                document.relpath,
                document.size,
                document.content_hash,
                document.encoding,
                fingerprint,
                part,
                parts,
            )
            if current and (weight + entry.share > max_bytes or len(current) >= max_docs):
                batches.append(current)
                current, weight = [], 0
            current.append(entry)
            weight += entry.share
    if current:
        batches.append(current)
    return batches


@dataclass
class PruneDecision:
    """What a run deletes, and every stored document it keeps although no source offers it now."""

    removed: list[str] = field(default_factory=list)
    # Sources the share guard held back: {source, would_remove, stored, share}.
    refused: list[dict[str, object]] = field(default_factory=list)
    # Stored documents of sources no longer configured, per source (kept unless asked).
    unconfigured: dict[str, int] = field(default_factory=dict)
    # Refused now but loaded before: the previous version stays searchable ("stale").
    stale: list[str] = field(default_factory=list)


def decide_removals(
    stored: set[str],
    *,
    sources: set[str],
    unavailable: set[str],
    present: set[str],
    rejected: set[str],
    delete_rejected: bool,
    max_share: float,
    allow_mass_prune: bool,
    prune_removed_sources: bool,
) -> PruneDecision:
    """Decide which stored documents are proven gone.

    A document is gone only when its source scanned cleanly and no longer lists it. A source that gave no
    documents (missing folder, empty listing, unmounted volume) proves nothing. A source dropped from the
    settings is pruned only when asked. A refused file keeps its previous version unless ``delete_rejected``.
    Finally, a run may not delete more than ``max_share`` of a source's documents (more than one document)
    unless ``allow_mass_prune``: a half-listed bucket must not halve the knowledge base.
    """
    decision = PruneDecision()
    per_source = Counter(source_of(uri) for uri in stored)
    decision.unconfigured = {s: n for s, n in sorted(per_source.items()) if s not in sources}
    candidates: list[str] = []
    for uri in sorted(stored):
        source = source_of(uri)
        if source not in sources:
            if prune_removed_sources:
                candidates.append(uri)
        elif source in unavailable or uri in present:
            continue
        elif uri in rejected:
            (candidates if delete_rejected else decision.stale).append(uri)
        else:
            candidates.append(uri)
    if prune_removed_sources:
        decision.unconfigured = {}
    going = Counter(source_of(uri) for uri in candidates)
    held = set()
    for source, count in sorted(going.items()):
        share = count / per_source[source]
        if source in sources and count > 1 and share > max_share and not allow_mass_prune:
            held.add(source)
            decision.refused.append(
                {"source": source, "would_remove": count, "stored": per_source[source], "share": round(share, 3)}
            )
    decision.removed = [uri for uri in candidates if source_of(uri) not in held]
    return decision


def source_of(uri: str) -> str:
    """The source name a document URI starts with."""
    return uri.split("/", 1)[0]
