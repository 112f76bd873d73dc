"""Which models the server can serve, loaded on first use and kept (a few at a time) in memory."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from genai_pipeline.config import Settings
from genai_pipeline.model_server.errors import not_found
from genai_pipeline.models.chat import BASE_CHAT_MODEL, ChatModel, base_checkpoint
from genai_pipeline.models.embeddings import LocalEmbedder, load_local_embedder
from genai_pipeline.models.packaged import EMBEDDING_MODEL, embedding_model_dir

log = logging.getLogger(__name__)

LOADED_CHAT_MODELS = 2


class ModelRegistry:
    """The embedding model, the base chat model and the fine-tuned models of succeeded jobs."""

    def __init__(self, settings: Settings, fine_tuned: Callable[[], dict[str, Path]]) -> None:
        self._settings = settings
        self._fine_tuned = fine_tuned
        self._chat: OrderedDict[str, ChatModel] = OrderedDict()
        self._lock = threading.Lock()

    def base_checkpoint(self) -> Path:
        """The base chat model's checkpoint (what fine-tunes start from)."""
        return base_checkpoint(self._settings.cache_dir, self._settings.model_server.chat_model_dir)

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
        models = {EMBEDDING_MODEL: "genai-pipeline", BASE_CHAT_MODEL: "genai-pipeline"}
        models.update(dict.fromkeys(self._fine_tuned(), "user"))
        return models

    def embedder(self) -> LocalEmbedder:
        """The packaged embedding model (one instance per process, shared with in-process ingestion)."""
        embedding = self._settings.embedding
        folder = embedding_model_dir(self._settings.cache_dir, embedding.local_model_dir)
        return load_local_embedder(folder, embedding.batch_size, embedding.threads)

    def chat_model(self, name: str) -> ChatModel:
        """A loaded chat model, or 404 for a name the server does not know."""
        with self._lock:
            if name in self._chat:
                self._chat.move_to_end(name)
                return self._chat[name]
            if name == BASE_CHAT_MODEL:
                checkpoint = self.base_checkpoint()
            else:
                checkpoint = self._fine_tuned().get(name)
                if checkpoint is None:
                    raise not_found("model", name)
            model = ChatModel(checkpoint)
            self._chat[name] = model
            while len(self._chat) > LOADED_CHAT_MODELS:
                self._chat.popitem(last=False)
            return model
