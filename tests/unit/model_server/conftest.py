"""A model server app on a tiny real chat model: chat and fine-tuning run for real, in a second or two."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from genai_pipeline.config import ModelServerSettings, Settings
from genai_pipeline.model_server.app import create_app

TINY_CONTEXT = 256
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-layer Llama with a byte-level tokenizer and a chat template, served as the base model ``tiny-chat``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("models") / "tiny-chat"
    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=TINY_CONTEXT,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_context() -> int:
    """Tokens the tiny model attends over."""
    return TINY_CONTEXT


@pytest.fixture
def make_server(tmp_path: Path, tiny_chat_model: Path) -> Iterator[Callable[..., TestClient]]:
    """Build the app on the tiny model with some model-server settings; a TestClient for it."""
    clients: list[TestClient] = []

    def make(**server: Any) -> TestClient:
        settings = Settings(home=tmp_path, model_server=ModelServerSettings(chat_model_dir=tiny_chat_model, **server))
        clients.append(TestClient(create_app(settings)))
        return clients[-1]

    yield make
    for client in clients:
        client.close()
