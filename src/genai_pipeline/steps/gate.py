"""The evaluation and cost gate: validate every formatted example, count billing tokens, estimate the cost.

Nothing leaves the store before the gate says so: ``evaluate`` writes the valid lines under the run's own
folder and the estimate; only ``combine`` (run when the estimate is within budget) publishes them as a
content-addressed dataset, which the fine-tune DAG is scheduled on.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any

from genai_pipeline.steps import finetune_store as layout
from genai_pipeline.steps import lineage
from genai_pipeline.steps.chat_jsonl import InvalidTrainingLine, parse_example
from genai_pipeline.steps.context import StepContext
from genai_pipeline.steps.contracts import Dataset, Evaluation, GateRequest
from genai_pipeline.steps.finetune_store import SPLITS, sha256
from genai_pipeline.steps.keys import safe_name
from genai_pipeline.store import Store

log = logging.getLogger(__name__)
# Invalid lines carried in the step's descriptor; the stored report has all of them.
INVALID_IN_DESCRIPTOR = 20
# OpenAI's chat accounting: each message costs its content and role plus a few framing tokens.
TOKENS_PER_MESSAGE, TOKENS_PER_REPLY = 3, 3


class NoValidExamplesError(RuntimeError):
    """A split has no valid example left: there is nothing to fine-tune on."""


@lru_cache(maxsize=4)
def _encoding(name: str) -> Any:
    import bpe_openai

    return bpe_openai.get_encoding(name)


def count_tokens(messages: list[dict[str, Any]], encoding: str) -> int:
    """Billing tokens of one example with the base model's encoding (bpe-openai: no download)."""
    enc = _encoding(encoding)
    total = TOKENS_PER_REPLY
    for message in messages:
        total += TOKENS_PER_MESSAGE + len(enc.encode(message["role"])) + len(enc.encode(message["content"]))
    return total


def estimate_usd(billing_tokens: int, n_epochs: int, price_per_million_tokens: float) -> float:
    """Price per 1M tokens x epochs x tokens: what the provider bills for training."""
    return price_per_million_tokens * n_epochs * billing_tokens / 1_000_000


def check_example(text: str, line: int, *, encoding: str, max_tokens: int) -> tuple[list[dict[str, Any]], int]:
    """Messages and token count of one line, or :class:`InvalidTrainingLine` saying what is wrong.

    On top of the chat format (roles, non-empty text, an assistant message) the last message must be the
    assistant's, the one the model learns to write, and the example must fit the per-example token limit.
    """
    messages = parse_example(text, line)
    if messages[-1]["role"] != "assistant":
        raise InvalidTrainingLine(line, f"the last message is from the {messages[-1]['role']}, not the assistant")
    tokens = count_tokens(messages, encoding)
    if tokens > max_tokens:
        raise InvalidTrainingLine(line, f"{tokens} tokens, over the per-example limit of {max_tokens}")
    return messages, tokens


def evaluate(ctx: StepContext, request: GateRequest) -> Evaluation:
    """Validate both splits line by line, count the training tokens and price them; write only the run's files."""
    settings, store = ctx.settings, ctx.store
    run_key = safe_name(request.run_id)
    _remove_staging_of_other_runs(store, run_key)
    index = store.read_json(layout.FORMATTED_INDEX)
    tune = settings.fine_tune
    invalid: list[dict[str, Any]] = []
    counts = {split: 0 for split in SPLITS}
    tokens = {split: 0 for split in SPLITS}
    seen_train: set[str] = set()
    for split in SPLITS:
        valid: list[dict[str, Any]] = []
        for label in (g for g in index["groups"] if g.startswith(f"{split}/")):
            group = label.split("/", 1)[1]
            for row in store.iter_jsonl(layout.formatted(split, group)):
                try:
                    messages, count = check_example(
                        row["text"], row["line"], encoding=tune.token_encoding, max_tokens=tune.max_example_tokens
                    )
                except InvalidTrainingLine as error:
                    invalid.append({"file": row["source"], "line": row["line"], "reason": error.reason})
                    continue
                canonical = json.dumps(messages, sort_keys=True)
                if split == "train":
                    seen_train.add(canonical)
                elif canonical in seen_train:
                    reason = "the same example is in the training set; validation must be unseen"
                    invalid.append({"file": row["source"], "line": row["line"], "reason": reason})
                    continue
                valid.append({"messages": messages})
                tokens[split] += count
        counts[split] = store.write_jsonl(layout.gate_run(run_key, f"{split}.jsonl"), valid)
    for item in invalid:
        log.warning("example left out: %s line %s: %s", item["file"], item["line"], item["reason"])
    empty = [split for split in SPLITS if counts[split] == 0]
    if empty:
        raise NoValidExamplesError(
            f"no valid {' or '.join(empty)} example left ({len(invalid)} lines refused, see the log); nothing to tune"
        )
    cost = estimate_usd(tokens["train"], request.n_epochs, request.price_per_million_tokens)
    result = Evaluation(
        run_key=run_key,
        run_id=request.run_id,
        train_examples=counts["train"],
        validation_examples=counts["validation"],
        invalid=invalid[:INVALID_IN_DESCRIPTOR],
        invalid_total=len(invalid),
        billing_tokens=tokens["train"],
        n_epochs=request.n_epochs,
        price_per_million_tokens=request.price_per_million_tokens,
        estimated_usd=round(cost, 6),
        budget_usd=request.budget_usd,
        within_budget=cost <= request.budget_usd,
        lineage=lineage.lineage(
            (lineage.store_file(settings, layout.formatted(*label.split("/", 1))) for label in index["groups"]),
            (lineage.store_file(settings, layout.gate_run(run_key, f"{split}.jsonl")) for split in SPLITS),
        ),
    )
    store.write_json(
        layout.gate_run(run_key, "report.json"),
        {
            **result.model_dump(),
            "invalid": invalid,
            "validation_tokens": tokens["validation"],
            # What was read, so combine describes exactly these files even if a format run ran since.
            "formatted": index,
            "example_files": _example_files(store, index),
        },
    )
    log.info(
        "%d train / %d validation examples, %d billing tokens x %d epochs at $%.2f/1M = $%.4f (budget $%.2f)",
        counts["train"],
        counts["validation"],
        tokens["train"],
        request.n_epochs,
        request.price_per_million_tokens,
        cost,
        request.budget_usd,
    )
    return result


def _example_files(store: Store, index: dict[str, Any]) -> list[dict[str, Any]]:
    """Every example file of the formatted groups with its content hash (the lineage's "trained on")."""
    files = []
    for label in index["groups"]:
        split, group = label.split("/", 1)
        manifest = store.read_json(layout.formatted(split, group, ".manifest.json"))
        files.extend({"split": split, **item} for item in manifest["files"])
    return files


def _remove_staging_of_other_runs(store: Store, run_key: str) -> None:
    """Valid-line copies of earlier runs (published or not) are removed; their reports stay as the record."""
    for other in store.keys(layout.GATE_FOLDER):
        if other != run_key:
            for split in SPLITS:
                store.remove(layout.gate_run(other, f"{split}.jsonl"))


def combine(ctx: StepContext, evaluation: Evaluation) -> Dataset:
    """Publish the run's valid lines as a dataset named by its content, with a manifest for lineage."""
    settings = ctx.settings
    if not evaluation.within_budget:
        raise ValueError("combine runs only within budget; the gate's branch should have stopped this run")
    store = ctx.store
    data = {split: store.read_bytes(layout.gate_run(evaluation.run_key, f"{split}.jsonl")) for split in SPLITS}
    hashes = {split: sha256(data[split]) for split in SPLITS}
    key = sha256(f"{hashes['train']}:{hashes['validation']}".encode())[:16]
    report = store.read_json(layout.gate_run(evaluation.run_key, "report.json"))
    for split in SPLITS:
        store.write_bytes(layout.dataset(key, f"{split}.jsonl"), data[split])
    manifest = {
        "dataset": key,
        "train_sha256": hashes["train"],
        "validation_sha256": hashes["validation"],
        "train_examples": evaluation.train_examples,
        "validation_examples": evaluation.validation_examples,
        "billing_tokens": evaluation.billing_tokens,
        "estimated_usd": evaluation.estimated_usd,
        "examples": report["example_files"],
        "runs": {"format_examples": report["formatted"]["run_id"], "evaluate_examples": evaluation.run_id},
    }
    store.write_json(layout.dataset(key, "manifest.json"), manifest)
    store.write_json(layout.LATEST_DATASET, {"dataset": key})
    return Dataset(
        dataset=key,
        train_sha256=hashes["train"],
        validation_sha256=hashes["validation"],
        train_examples=evaluation.train_examples,
        validation_examples=evaluation.validation_examples,
        lineage=lineage.lineage(
            (lineage.store_file(settings, layout.gate_run(evaluation.run_key, f"{split}.jsonl")) for split in SPLITS),
            (lineage.store_file(settings, layout.dataset(key, f"{split}.jsonl")) for split in SPLITS),
        ),
    )
