from __future__ import annotations

import pytest
from pydantic import ValidationError

from genai_pipeline.config import EmbeddingProvider, RunMode, Settings


def test_nested_env_vars_configure_every_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_RUNTIME__MODE", "kubernetes")
    monkeypatch.setenv("PIPELINE_STORE_URI", "s3://bucket/store")
    monkeypatch.setenv("PIPELINE_RUNTIME__IMAGE_TAG", "3f2a9c0d1b7e")
    monkeypatch.setenv("PIPELINE_EMBEDDING__PROVIDER", "openai")
    monkeypatch.setenv("PIPELINE_CHUNKING__SIZE_TOKENS", "300")
    monkeypatch.setenv("PIPELINE_INGEST__SOURCES", '{"handbook": "s3://bucket/handbook"}')
    settings = Settings()
    assert settings.runtime.mode is RunMode.KUBERNETES
    assert settings.embedding.provider is EmbeddingProvider.OPENAI
    assert settings.chunking.size_tokens == 300
    assert settings.ingest.sources == {"handbook": "s3://bucket/handbook"}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PIPELINE_CHUNKING__OVERLAP_TOKENS", "150", "overlap_tokens must be under half"),
        ("PIPELINE_WEAVIATE__COLLECTION", "lowercase", "capital letter"),
        ("PIPELINE_INGEST__SOURCES", '{"bad name": "/x"}', "may hold only"),
        ("PIPELINE_RUNTIME__MODE", "docker", "embedded"),
        ("PIPELINE_RUNTIME__MODE", "kubernetes", "PIPELINE_STORE_URI must name a store every pod can reach"),
        ("PIPELINE_MODEL_SERVER__FINE_TUNE_METHOD", "qlora", "'auto', 'full' or 'lora'"),
        ("PIPELINE_MODEL_SERVER__LORA_RANK", "0", "greater than or equal to 1"),
        ("PIPELINE_MODEL_SERVER__LORA_ALPHA", "0", "greater than 0"),
        ("PIPELINE_MODEL_SERVER__TRAIN_MEMORY_LIMIT_BYTES", "0", "greater than or equal to 1"),
    ],
)
def test_invalid_settings_fail_with_a_message(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_public_env_round_trips_and_never_carries_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_OPENAI__API_KEY", "sk-very-secret")
    monkeypatch.setenv("PIPELINE_WEAVIATE__API_KEY", "wv-secret")
    # A Slack-style webhook URL carries its token in the path: a secret too.
    monkeypatch.setenv("PIPELINE_NOTIFY__WEBHOOK_URL", "https://hooks.example.com/services/T0/B0/hook-secret")
    monkeypatch.setenv("PIPELINE_CHUNKING__SIZE_TOKENS", "123")
    settings = Settings()
    env = settings.public_env()
    assert not any(secret in v for v in env.values() for secret in ("sk-very-secret", "wv-secret", "hook-secret"))
    assert "PIPELINE_OPENAI__API_KEY" not in env and "PIPELINE_NOTIFY__WEBHOOK_URL" not in env
    assert "PIPELINE_HOME" not in env  # machine-local paths stay on the machine
    assert env["PIPELINE_INGEST__SOURCES"] == '{"pipeline-docs": "package://genai_pipeline/sample_kb"}'

    # A pod rebuilds the same settings from that env alone (secrets come from its Secret instead).
    monkeypatch.delenv("PIPELINE_OPENAI__API_KEY")
    monkeypatch.delenv("PIPELINE_WEAVIATE__API_KEY")
    monkeypatch.delenv("PIPELINE_NOTIFY__WEBHOOK_URL")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    skip = {"home": True, "cache_dir": True, "openai": {"api_key"}, "weaviate": {"api_key"}, "notify": {"webhook_url"}}
    assert Settings().model_dump(exclude=skip) == settings.model_dump(exclude=skip)


def test_inside_the_checkout_the_cli_finds_the_demos_home(tmp_path, monkeypatch) -> None:
    """`make demo` keeps its state in <checkout>/.pipeline: the README's next `uv run pipeline ...` must find it."""
    from pathlib import Path

    from genai_pipeline.config import Settings

    repo = Path(__file__).resolve().parents[2]
    monkeypatch.delenv("PIPELINE_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(repo / "src" / "genai_pipeline")
    assert Settings().home == repo / ".pipeline"
    monkeypatch.chdir(tmp_path)  # anywhere else (a pod, another project): the XDG data home
    assert Settings().home == tmp_path / "xdg" / "genai-pipeline"
    monkeypatch.setenv("PIPELINE_HOME", str(tmp_path / "mine"))
    assert Settings().home == tmp_path / "mine"


def test_the_base_chat_model_is_a_folder_or_a_gguf_file_not_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_MODEL_SERVER__CHAT_MODEL_GGUF", "/models/qwen2.5-1.5b-instruct-q4_k_m.gguf")
    assert Settings().model_server.chat_model_gguf.name == "qwen2.5-1.5b-instruct-q4_k_m.gguf"
    assert "PIPELINE_MODEL_SERVER__CHAT_MODEL_GGUF" not in Settings().public_env()  # a path on this machine
    monkeypatch.setenv("PIPELINE_MODEL_SERVER__CHAT_MODEL_DIR", "/models/Qwen2.5-1.5B-Instruct")
    with pytest.raises(ValidationError, match="set chat_model_dir or chat_model_gguf, not both"):
        Settings()
