"""Embedding providers: the packaged model in-process, or any OpenAI-compatible embeddings API.

The local model server's ``/v1/embeddings`` serves :class:`LocalEmbedder` too, so ingestion in-process
and ingestion through the API produce the same vectors from one implementation.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from genai_pipeline.config import EmbeddingProvider, Settings
from genai_pipeline.models.packaged import (
    EMBEDDING_DIMENSIONS,
    EMBEDDING_MAX_TOKENS,
    EMBEDDING_MODEL,
    TOKENIZER_FILES,
    ModelUnavailable,
    embedding_model_dir,
)
from genai_pipeline.models.tokens import HuggingFaceTokens, TiktokenTokens, TokenSpans

if TYPE_CHECKING:
    import numpy as np


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors and counts the calls it makes."""

    model_id: str
    calls: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, ``float32``."""
        ...


class LocalEmbedder:
    """all-MiniLM-L6-v2 on ONNX Runtime, with its own WordPiece tokenizer (256-token window)."""

    model_id = EMBEDDING_MODEL
    dimensions = EMBEDDING_DIMENSIONS

    def __init__(self, model_dir: Path, *, batch_size: int = 64, threads: int = 0) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        # Idle ONNX threads would spin and steal the CPU that chunk/load tasks beside this one need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self._session = onnxruntime.InferenceSession(
            str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(EMBEDDING_MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._batch_size = batch_size
        self._lock = threading.Lock()  # a server shares one instance across request threads
        self.calls = 0

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Word pieces the model sees (after truncation), for usage reporting."""
        return sum(sum(e.attention_mask) for e in self._tokenizer.encode_batch(list(texts)))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Sort by length so each padded batch wastes little, then restore the caller's order."""
        import numpy as np  # imported by the embedders only: chunking counts tokens without it

        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        with self._lock:
            self.calls += 1
            for offset in range(0, len(order), self._batch_size):
                rows = order[offset : offset + self._batch_size]
                encodings = self._tokenizer.encode_batch([texts[i] for i in rows])
                ids = np.array([e.ids for e in encodings], dtype=np.int64)
                mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
                (vectors,) = self._session.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})
                out[rows] = vectors
        return out


class OpenAIEmbedder:
    """``POST /v1/embeddings`` on any OpenAI-compatible server.

    Retries with exponential backoff and ``Retry-After`` on 408/409/429/5xx are the client's own
    (``max_retries`` from settings), so no second retry loop is wrapped around it.
    """

    # The API's per-request limit on inputs.
    max_inputs = 2048

    def __init__(self, client, model: str, *, batch_size: int = 256) -> None:
        self._client = client
        self.model_id = model
        self._batch_size = min(batch_size, self.max_inputs)
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed in request-sized slices; the response's ``index`` fixes the order."""
        import numpy as np

        rows: list[np.ndarray] = []
        for offset in range(0, len(texts), self._batch_size):
            batch = list(texts[offset : offset + self._batch_size])
            self.calls += 1
            response = self._client.embeddings.create(model=self.model_id, input=batch, encoding_format="float")
            ordered = sorted(response.data, key=lambda item: item.index)
            if len(ordered) != len(batch):
                raise RuntimeError(f"{self.model_id}: asked for {len(batch)} embeddings, got {len(ordered)}")
            rows.append(np.asarray([item.embedding for item in ordered], dtype=np.float32))
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        vectors = np.vstack(rows)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


@lru_cache(maxsize=4)
def load_local_embedder(model_dir: Path, batch_size: int, threads: int) -> LocalEmbedder:
    """One loaded model per process: tasks in one worker, and the server, reuse it."""
    return LocalEmbedder(model_dir, batch_size=batch_size, threads=threads)


def make_embedder(settings: Settings) -> Embedder:
    """The configured provider: the packaged model in-process, or the OpenAI-compatible API."""
    if settings.embedding.provider is EmbeddingProvider.LOCAL:
        if settings.embedding.model != EMBEDDING_MODEL:
            raise ModelUnavailable(
                f"local embedding model {settings.embedding.model!r} is not packaged; the local provider has "
                f"{EMBEDDING_MODEL!r}"
            )
        model_dir = embedding_model_dir(settings.cache_dir, settings.embedding.local_model_dir)
        return load_local_embedder(model_dir, settings.embedding.batch_size, settings.embedding.threads)
    from genai_pipeline.clients.openai_compat import make_openai_client  # the openai SDK is slow to import

    return OpenAIEmbedder(
        make_openai_client(settings), settings.embedding.model, batch_size=settings.embedding.batch_size
    )


def make_token_counter(settings: Settings) -> TokenSpans:
    """Tokenizer of the configured embedding model, without loading the model itself."""
    if settings.embedding.provider is EmbeddingProvider.LOCAL:
        folder = embedding_model_dir(settings.cache_dir, settings.embedding.local_model_dir, TOKENIZER_FILES)
        return HuggingFaceTokens(folder / "tokenizer.json")
    return TiktokenTokens()
