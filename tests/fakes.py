"""In-memory services for step tests: a knowledge base and an OpenAI-compatible API that keep what they are given.

Test-only, never a runtime fallback. Each passes the same contract tests as the real implementation
(tests/contracts/), so a step test on them shows what the step does on Weaviate and the model server.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from genai_pipeline.config import Settings
from genai_pipeline.steps import load
from genai_pipeline.steps.context import StepContext
from genai_pipeline.steps.prompt import Source


class InMemoryKnowledgeBase:
    """The chunk collection as a dict of objects by ID; refuses what Weaviate refuses (wrong types, vector sizes)."""

    def __init__(self, name: str = "Chunks") -> None:
        self.name = name
        self.model: str | None = None
        self.created = False
        self.objects: dict[str, tuple[dict[str, Any], np.ndarray]] = {}

    def exists(self) -> bool:
        """Whether :meth:`ensure` made it."""
        return self.created

    def ensure(self, embedding_model: str) -> bool:
        """Create it recording the model, once."""
        if self.created:
            return False
        self.created, self.model = True, embedding_model
        return True

    def embedding_model(self) -> str | None:
        """The model recorded at creation."""
        return self.model

    def count(self) -> int:
        """How many objects it holds."""
        return len(self.objects)

    def stored_documents(self) -> dict[str, load.StoredDocument]:
        """Stored documents by source URI."""
        return load.stored_documents(properties for properties, _ in self.objects.values())

    def upsert(self, chunks: Sequence[dict[str, Any]], vectors: np.ndarray) -> int:
        """Write each valid object by its deterministic ID; then raise for the ones refused, as a batch does."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        failed = []
        for chunk, vector in zip(chunks, vectors, strict=True):
            properties = {key: chunk[key] for key in load.PROPERTIES}
            problem = self._refusal(properties, vector)
            if problem:
                failed.append((properties, problem))
                continue
            uuid = load.chunk_uuid(str(chunk["source_uri"]), int(chunk["chunk_index"]), str(chunk["content_hash"]))
            self.objects[uuid] = (properties, np.asarray(vector, dtype=np.float32))
        if failed:
            raise load.failure_summary(failed, len(chunks))
        return len(chunks)

    def _refusal(self, properties: dict[str, Any], vector: np.ndarray) -> str | None:
        for key, kind in load.PROPERTIES.items():
            value = properties[key]
            if not isinstance(value, kind) or isinstance(value, bool):
                return f"{key}: {value!r} is not {kind.__name__}"
        sizes = {len(v) for _, v in self.objects.values()}
        if sizes and len(vector) not in sizes:
            return f"vector of length {len(vector)}, the collection's are {sizes.pop()}"
        return None

    def delete_stale(self, source_uri: str, keep_fingerprint: str) -> int:
        """Delete the document's objects of other fingerprints."""
        return self._delete(lambda p: p["source_uri"] == source_uri and p["fingerprint"] != keep_fingerprint)

    def delete_documents(self, source_uris: Iterable[str]) -> int:
        """Delete every object of these documents."""
        gone = set(source_uris)
        return self._delete(lambda p: p["source_uri"] in gone)

    def _delete(self, matches: Callable[[dict[str, Any]], bool]) -> int:
        doomed = [uuid for uuid, (properties, _) in self.objects.items() if matches(properties)]
        for uuid in doomed:
            del self.objects[uuid]
        return len(doomed)

    def nearest(self, vector: Sequence[float], *, text: str, limit: int, alpha: float | None) -> list[Source]:
        """Cosine distance, nearest first; hybrid fuses min-max-scaled vector and keyword scores, distance 0.0."""
        items = list(self.objects.values())
        if not items:
            return []
        query = np.asarray(vector, dtype=np.float32)
        matrix = np.vstack([v for _, v in items])
        similarity = matrix @ query / np.maximum(np.linalg.norm(matrix, axis=1) * np.linalg.norm(query), 1e-12)
        distances = 1.0 - similarity
        if alpha is None:
            order = np.argsort(distances, kind="stable")[:limit]
            return [load.retrieved_source(items[i][0], float(distances[i])) for i in order]
        words = set(_words(text))
        keyword = np.array([sum(w in words for w in _words(p["text"])) for p, _ in items], dtype=np.float32)
        fused = alpha * _scaled(similarity) + (1 - alpha) * _scaled(keyword)
        order = np.argsort(-fused, kind="stable")[:limit]
        return [load.retrieved_source(items[i][0], None) for i in order]

    def chunk(self, source_uri: str, chunk_index: int) -> dict[str, Any] | None:
        """One object's returned properties."""
        for properties, _ in self.objects.values():
            if properties["source_uri"] == source_uri and properties["chunk_index"] == chunk_index:
                return {key: properties[key] for key in load.RETURNED_PROPERTIES}
        return None


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _scaled(scores: np.ndarray) -> np.ndarray:
    span = float(scores.max() - scores.min())
    return (scores - scores.min()) / span if span else np.zeros_like(scores)


# -- the OpenAI-compatible API ------------------------------------------------------------------------------


Reply = Callable[[str, list[dict[str, Any]]], str]


@dataclass
class InMemoryOpenAI:
    """Files, fine-tuning jobs and chat completions in the OpenAI SDK's shapes, kept in memory.

    A job created here succeeds at once with ``ft:<base>:<suffix>:<n>``, a result file of a few steps, and the
    tuned model answering as ``tuned_reply``; ``reply`` answers for every other model.
    """

    reply: Reply = lambda model, messages: f"{model} has nothing to say."
    tuned_reply: Reply | None = None
    files_store: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs_store: dict[str, SimpleNamespace] = field(default_factory=dict)
    chats: list[dict[str, Any]] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.files = SimpleNamespace(
            create=self._create_file, list=self._list_files, content=self._content, retrieve=self._file
        )
        self.fine_tuning = SimpleNamespace(
            jobs=SimpleNamespace(create=self._create_job, retrieve=self._job, list=self._list_jobs)
        )
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._complete))

    def with_options(self, **_: Any) -> InMemoryOpenAI:
        """Retries and timeouts mean nothing in memory."""
        return self

    def _create_file(self, *, file: tuple[str, bytes], purpose: str) -> SimpleNamespace:
        name, data = file
        if purpose == "fine-tune":
            _check_jsonl(name, data)
        file_id = f"file-{next(self._ids)}"
        self.files_store[file_id] = {"filename": name, "data": bytes(data), "purpose": purpose}
        return self._file(file_id)

    def _file(self, file_id: str) -> SimpleNamespace:
        entry = self.files_store[file_id]
        return SimpleNamespace(
            id=file_id, filename=entry["filename"], bytes=len(entry["data"]), purpose=entry["purpose"]
        )

    def _list_files(self, *, purpose: str | None = None) -> list[SimpleNamespace]:
        return [self._file(i) for i, e in self.files_store.items() if purpose in (None, e["purpose"])]

    def _content(self, file_id: str) -> SimpleNamespace:
        data = self.files_store[file_id]["data"]
        return SimpleNamespace(read=lambda: data)

    def _create_job(
        self,
        *,
        model: str,
        training_file: str,
        validation_file: str | None = None,
        suffix: str | None = None,
        seed: int | None = None,
        method: dict[str, Any] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> SimpleNamespace:
        for file_id in filter(None, (training_file, validation_file)):
            if file_id not in self.files_store:
                raise KeyError(f"no file {file_id}")
        number = next(self._ids)
        steps = [{"step": s, "train_loss": 2.0 / s, "valid_loss": 2.2 / s} for s in range(1, 4)]
        results = "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n" + "".join(
            f"{r['step']},{r['train_loss']},0.5,{r['valid_loss']},0.5\n" for r in steps
        )
        result_file = self._create_file(file=("results.csv", results.encode()), purpose="fine-tune-results")
        job = SimpleNamespace(
            id=f"ftjob-{number}",
            model=model,
            status="succeeded",
            fine_tuned_model=f"ft:{model}:{suffix or 'pipeline'}:{number}",
            result_files=[result_file.id],
            trained_tokens=1000,
            finished_at=int(time.time()),
            metadata=dict(metadata or {}),
            hyperparameters=((method or {}).get("supervised") or {}).get("hyperparameters", {}),
            seed=seed,
        )
        self.jobs_store[job.id] = job
        return job

    def _job(self, job_id: str) -> SimpleNamespace:
        return self.jobs_store[job_id]

    def _list_jobs(self, *, limit: int = 20) -> SimpleNamespace:
        return SimpleNamespace(data=list(reversed(self.jobs_store.values()))[:limit])

    def _complete(self, *, model: str, messages: list[dict[str, Any]], **options: Any) -> SimpleNamespace:
        self.chats.append({"model": model, "messages": messages, **options})
        tuned = model.startswith("ft:") and self.tuned_reply is not None
        text = (self.tuned_reply if tuned else self.reply)(model, messages)  # type: ignore[misc]
        usage = SimpleNamespace(prompt_tokens=sum(len(m["content"].split()) for m in messages), completion_tokens=5)
        return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=text))], usage=usage)


def _check_jsonl(name: str, data: bytes) -> None:
    import json

    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if line.strip() and "messages" not in json.loads(line):
            raise ValueError(f"{name} line {number}: no messages")


def fake_context(
    settings: Settings,
    *,
    knowledge_base: InMemoryKnowledgeBase | None = None,
    openai: InMemoryOpenAI | None = None,
) -> StepContext:
    """A step context on in-memory services and the packaged embedder (real, in-process: no server)."""
    kb = knowledge_base or InMemoryKnowledgeBase(settings.weaviate.collection)
    api = openai or InMemoryOpenAI()

    @contextmanager
    def open_kb() -> Iterator[InMemoryKnowledgeBase]:
        yield kb

    def embedder() -> Any:
        from genai_pipeline.models.embeddings import make_embedder

        return make_embedder(settings)

    return StepContext(settings, open_kb, lambda: api, embedder)
