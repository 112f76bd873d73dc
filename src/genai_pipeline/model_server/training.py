"""A real supervised fine-tune of the local chat model on CPU: every weight, or a LoRA adapter.

Loss is taken on assistant tokens only (the prompt is context, not a target), as hosted chat fine-tuning
does. Validation loss and token accuracy are measured every few steps; caps on steps and seconds keep
demo and test jobs to minutes and are reported, never silent.

Memory: a full fine-tune holds fp32 weights, their gradients and AdamW's two moments, 16 bytes per parameter
(activations come on top); LoRA holds the frozen fp32 weights (4 bytes per parameter) and those 16 bytes only
per adapter parameter, a few percent of the model. The model server picks LoRA when the first would not fit.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IGNORE = -100
# fp32 weights (4) + gradients (4) + AdamW's first and second moments (4 + 4).
FULL_BYTES_PER_PARAMETER = 16
# Share of the memory limit a full fine-tune's estimate may take; the rest is for activations, the tokenizer and
# the models the server keeps loaded for chat.
FULL_FINE_TUNE_SHARE = 0.75


@dataclass(frozen=True)
class LoraPlan:
    """Train a LoRA adapter of this rank and scale; ``base_model`` (the id it is served on) is saved with it."""

    rank: int
    alpha: float
    base_model: str


@dataclass(frozen=True)
class TrainingPlan:
    """Resolved hyperparameters and caps of one job."""

    n_epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    max_steps: int
    max_seconds: float
    eval_every: int
    # None: a full fine-tune.
    lora: LoraPlan | None = None


@dataclass
class StepMetrics:
    """One row of the job's result file."""

    step: int
    train_loss: float
    train_accuracy: float
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None


@dataclass
class TrainingResult:
    """What a finished fine-tune produced."""

    steps: int
    trained_tokens: int
    capped: str | None


class TrainingCancelled(Exception):
    """The job was cancelled between two steps."""


def parameter_count(checkpoint: Path) -> int:
    """Parameters of a checkpoint's model, counted on the meta device (no weights are read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(checkpoint))
    return sum(parameter.numel() for parameter in model.parameters())


def memory_limit(configured: int | None = None) -> int:
    """Bytes training may use: ``configured``, else the cgroup's limit (a container's), else the machine's RAM."""
    if configured is not None:
        return configured
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):  # cgroup v2, v1
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            return min(int(text), physical)  # v1 writes a huge number for "no limit"
    return physical


def full_fine_tune_fits(parameters: int, limit: int) -> bool:
    """Whether a full fine-tune's estimate (16 bytes per parameter) stays within 3/4 of ``limit``."""
    return parameters * FULL_BYTES_PER_PARAMETER <= limit * FULL_FINE_TUNE_SHARE


def encode_example(tokenizer: Any, messages: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    """Token ids of a conversation and labels that are ``IGNORE`` everywhere but assistant replies."""
    ids: list[int] = tokenizer.apply_chat_template(messages, tokenize=True)
    labels = [IGNORE] * len(ids)
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(tokenizer.apply_chat_template(messages[:index], add_generation_prompt=True, tokenize=True))
        end = len(tokenizer.apply_chat_template(messages[: index + 1], tokenize=True))
        labels[start:end] = ids[start:end]
    return ids, labels


def _batch(torch: Any, rows: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    width = max(len(ids) for ids, _ in rows)
    input_ids = [ids + [pad_id] * (width - len(ids)) for ids, _ in rows]
    labels = [lab + [IGNORE] * (width - len(lab)) for _, lab in rows]
    mask = [[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows]
    return {
        "input_ids": torch.tensor(input_ids),
        "labels": torch.tensor(labels),
        "attention_mask": torch.tensor(mask),
    }


def _accuracy(torch: Any, logits: Any, labels: Any) -> tuple[int, int]:
    predicted = logits[:, :-1].argmax(-1)
    target = labels[:, 1:]
    scored = target != IGNORE
    return int((predicted[scored] == target[scored]).sum()), int(scored.sum())


def _evaluate(torch: Any, model: Any, rows: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[float, float]:
    model.eval()
    losses, correct, total = [], 0, 0
    with torch.no_grad():
        for row in rows:
            batch = _batch(torch, [row], pad_id)
            output = model(**batch)
            losses.append(float(output.loss))
            right, count = _accuracy(torch, output.logits, batch["labels"])
            correct, total = correct + right, total + count
    model.train()
    return sum(losses) / len(losses), correct / max(total, 1)


def fine_tune(
    base: Path,
    train: list[list[dict[str, Any]]],
    valid: list[list[dict[str, Any]]],
    plan: TrainingPlan,
    output: Path,
    on_step: Callable[[StepMetrics], None],
    should_stop: Callable[[], bool],
) -> TrainingResult:
    """Train ``base`` on ``train`` and save the result to ``output``; ``on_step`` sees every step's metrics.

    With ``plan.lora``, ``output`` holds only the adapter (its weights and ``adapter_config.json``, which names
    the base model), a few MB; otherwise a full checkpoint with the tokenizer.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(plan.seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if plan.lora is not None:
        model = _with_adapter(model, plan.lora)
    model.train()
    pad_id = tokenizer.eos_token_id
    train_rows = [encode_example(tokenizer, messages) for messages in train]
    valid_rows = [encode_example(tokenizer, messages) for messages in valid]
    trained = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=plan.learning_rate)
    order = random.Random(plan.seed)
    steps_per_epoch = math.ceil(len(train_rows) / plan.batch_size)
    planned = plan.n_epochs * steps_per_epoch
    started = time.monotonic()
    step, trained_tokens, capped = 0, 0, None
    for _epoch in range(plan.n_epochs):
        indices = list(range(len(train_rows)))
        order.shuffle(indices)
        for offset in range(0, len(indices), plan.batch_size):
            if should_stop():
                raise TrainingCancelled
            if step >= plan.max_steps:
                capped = f"stopped at the step cap ({plan.max_steps} of {planned} planned steps)"
                break
            if time.monotonic() - started > plan.max_seconds:
                capped = f"stopped at the time cap ({plan.max_seconds:.0f} s, {step} of {planned} steps)"
                break
            batch = _batch(torch, [train_rows[i] for i in indices[offset : offset + plan.batch_size]], pad_id)
            forward = model(**batch)
            forward.loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            trained_tokens += int(batch["attention_mask"].sum())
            right, count = _accuracy(torch, forward.logits.detach(), batch["labels"])
            metrics = StepMetrics(step, float(forward.loss.detach()), right / max(count, 1))
            if valid_rows and (step % plan.eval_every == 0 or step == planned):
                metrics.valid_loss, metrics.valid_mean_token_accuracy = _evaluate(torch, model, valid_rows, pad_id)
            on_step(metrics)
        if capped:
            break
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(output.name + ".partial")
    model.save_pretrained(staging)
    if plan.lora is None:
        tokenizer.save_pretrained(staging)  # an adapter is served with its base model's tokenizer
    staging.rename(output)
    return TrainingResult(step, trained_tokens, capped)


def _with_adapter(model: Any, lora: LoraPlan) -> Any:
    """``model`` with a trainable LoRA adapter on every linear layer but the output head, the rest frozen."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    model.peft_config["default"].base_model_name_or_path = lora.base_model  # not the cache path it loaded from
    return model
