from __future__ import annotations

import os
from pathlib import Path

import pytest

from genai_pipeline.config import FineTuneMethod, ModelServerSettings
from genai_pipeline.model_server.jobs import training_method
from genai_pipeline.model_server.training import full_fine_tune_fits, memory_limit, parameter_count

GIB = 2**30


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config-only Llama checkpoint: counting parameters reads no weights."""
    from transformers import LlamaConfig

    folder = tmp_path_factory.mktemp("tiny")
    LlamaConfig(
        vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4
    ).save_pretrained(folder)
    return folder


def test_parameters_are_counted_from_the_config_alone(tiny_checkpoint: Path) -> None:
    # embeddings and output head 2 x 1000 x 64; per layer q, k, v, o 4 x 64 x 64, MLP 3 x 64 x 128, two norms.
    per_layer = 4 * 64 * 64 + 3 * 64 * 128 + 2 * 64
    assert parameter_count(tiny_checkpoint) == 2 * 1000 * 64 + 2 * per_layer + 64


@pytest.mark.parametrize(
    ("parameters", "limit", "fits"),
    [
        (134_515_008, 6 * GIB, True),  # SmolLM2-135M under the chart's 6Gi: 2.0 GiB
        (134_515_008, 2 * GIB, False),  # 2.0 GiB is over 3/4 of 2 GiB
        (1_543_714_304, 16 * GIB, False),  # Qwen2.5-1.5B: 23 GiB
        (1_543_714_304, 32 * GIB, True),
    ],
)
def test_a_full_fine_tune_fits_at_16_bytes_per_parameter_in_three_quarters_of_the_limit(
    parameters: int, limit: int, fits: bool
) -> None:
    assert full_fine_tune_fits(parameters, limit) is fits


def test_the_memory_limit_is_the_configured_one_else_the_container_s_or_the_machine_s() -> None:
    assert memory_limit(3 * GIB) == 3 * GIB
    assert 0 < memory_limit() <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@pytest.mark.parametrize(
    ("method", "limit", "lora", "reason"),
    [
        (FineTuneMethod.LORA, None, True, "FINE_TUNE_METHOD=lora"),
        (FineTuneMethod.FULL, 1, False, "FINE_TUNE_METHOD=full"),
        (FineTuneMethod.AUTO, GIB, False, "Training every weight: a full fine-tune of 0 M parameters"),
        (FineTuneMethod.AUTO, 1_000_000, True, "needs about 0.0 GiB, over 3/4 of the memory limit"),
    ],
)
def test_auto_trains_lora_only_when_a_full_fine_tune_would_not_fit(
    tiny_checkpoint: Path, method: FineTuneMethod, limit: int | None, lora: bool, reason: str
) -> None:
    settings = ModelServerSettings(fine_tune_method=method, train_memory_limit_bytes=limit, lora_rank=4, lora_alpha=8)
    plan, why = training_method(settings, "tiny", tiny_checkpoint)
    assert (plan is not None) is lora and reason in why
    if plan is not None:
        assert (plan.rank, plan.alpha, plan.base_model) == (4, 8, "tiny")
        assert why.startswith("Training a LoRA adapter (rank 4, alpha 8)")
