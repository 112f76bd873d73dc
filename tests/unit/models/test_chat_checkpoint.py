from __future__ import annotations

from pathlib import Path

import pytest

from genai_pipeline.models.chat import base_checkpoint
from genai_pipeline.models.packaged import ModelUnavailable, embedding_model_dir


def test_a_prepared_chat_model_folder_is_used_as_is(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert base_checkpoint(tmp_path / "cache", tmp_path) == tmp_path
    assert not (tmp_path / "cache").exists()  # nothing converted


def test_an_unprepared_chat_model_folder_says_how_to_prepare_it(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="pipeline models prepare --chat-out"):
        base_checkpoint(tmp_path / "cache", tmp_path / "missing")


def test_chunking_needs_only_the_tokenizer_of_a_prepared_folder(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{}")
    assert embedding_model_dir(tmp_path / "cache", tmp_path, ("tokenizer.json",)) == tmp_path
    with pytest.raises(ModelUnavailable, match=r"model\.onnx"):
        embedding_model_dir(tmp_path / "cache", tmp_path)
