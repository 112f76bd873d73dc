"""Which models the server can serve, loaded on first use and kept (a few at a time) in memory."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from genai_pipeline.config import Settings
from genai_pipeline.model_server.errors import APIError, not_found
from genai_pipeline.model_server.retention import mark_used
from genai_pipeline.models.chat import ChatModel, adapter_base_model, base_checkpoint, chat_model_name
from genai_pipeline.models.embeddings import LocalEmbedder, load_local_embedder
from genai_pipeline.models.packaged import EMBEDDING_MODEL, ModelUnavailable, embedding_model_dir

log = logging.getLogger(__name__)

LOADED_CHAT_MODELS = 2


class ModelRegistry:
    """The embedding model, the base chat model and the fine-tuned models of succeeded jobs."""

    def __init__(self, settings: Settings, fine_tuned: Callable[[], dict[str, Path]]) -> None:
        self._settings = settings
        server = settings.model_server
        # The base chat model's id: the packaged SmolLM2's, or the name of the folder or GGUF file configured.
        self.base_model = chat_model_name(server.chat_model_dir, server.chat_model_gguf)
        self._fine_tuned = fine_tuned
        self._chat: OrderedDict[str, ChatModel] = OrderedDict()
        self._lock = threading.Lock()

    def base_checkpoint(self) -> Path:
        """The base chat model's checkpoint (what fine-tunes start from)."""
        server = self._settings.model_server
        return base_checkpoint(self._settings.cache_dir, server.chat_model_dir, server.chat_model_gguf)

    def prepare_in_background(self) -> threading.Thread:
        """Convert the base chat model now (once per cache), so the first chat or fine-tune does not wait for it.

        A failure is only logged here: the request that needs the model reports it.
        """

        def prepare() -> None:
            try:
                self.base_checkpoint()
            except Exception as error:
                log.warning("the base chat model is not ready: %s", error)

        thread = threading.Thread(target=prepare, name="prepare-base-chat-model", daemon=True)
        thread.start()
        return thread

    def available(self) -> dict[str, str]:
        """Model id -> owner, as ``/v1/models`` lists them."""
        models = {EMBEDDING_MODEL: "genai-pipeline", self.base_model: "genai-pipeline"}
        models.update(dict.fromkeys(self._fine_tuned(), "user"))
        return models

    def embedder(self) -> LocalEmbedder:
        """The packaged embedding model (one instance per process, shared with in-process ingestion)."""
        embedding = self._settings.embedding
        folder = embedding_model_dir(self._settings.cache_dir, embedding.local_model_dir)
        return load_local_embedder(folder, embedding.batch_size, embedding.threads)

    def chat_model(self, name: str) -> ChatModel:
        """A loaded chat model, 404 for a name the server does not know, 500 saying why one cannot be loaded.

        A fine-tuned model is marked used each time, which decides what is deleted first (``retention``); one
        deleted since it was loaded is dropped and 404, as if never loaded.
        """
        with self._lock:
            checkpoint = None if name == self.base_model else self._fine_tuned().get(name)
            if checkpoint is None and name != self.base_model:
                self._chat.pop(name, None)
                raise not_found("model", name)
            if name not in self._chat:
                try:
                    self._chat[name] = self._load(name, checkpoint)
                except ModelUnavailable as error:
                    raise APIError(500, str(error), type="server_error", code="model_unavailable") from error
                while len(self._chat) > LOADED_CHAT_MODELS:
                    self._chat.popitem(last=False)
            self._chat.move_to_end(name)
            model = self._chat[name]
        if checkpoint is not None:
            mark_used(checkpoint)
        return model

    def _load(self, name: str, checkpoint: Path | None) -> ChatModel:
        """The base model (``checkpoint`` None), or the full checkpoint or LoRA adapter of a fine-tuned one."""
        if checkpoint is None:
            return ChatModel(self.base_checkpoint())
        base = adapter_base_model(checkpoint)
        if base is None:
            return ChatModel(checkpoint)  # a full fine-tune
        if base != self.base_model:
            raise ModelUnavailable(
                f"{name} is a LoRA adapter of {base}, but this server's base chat model is {self.base_model}: "
                "serve that model again (PIPELINE_MODEL_SERVER__CHAT_MODEL_DIR or __CHAT_MODEL_GGUF) to use it"
            )
        return ChatModel(self.base_checkpoint(), adapter=checkpoint)
