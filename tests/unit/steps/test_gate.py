"""The evaluation and cost gate on formatted examples in a tmp store: refusals, tokens, the estimate, the dataset."""

from __future__ import annotations

import json
from pathlib import Path

import bpe_openai
import pytest

from conftest import example_settings, isolated_settings, write_tree
from fakes import fake_context
from genai_pipeline.config import Settings
from genai_pipeline.steps import finetune_store as layout
from genai_pipeline.steps.chat_jsonl import InvalidTrainingLine
from genai_pipeline.steps.contracts import Evaluation, GateRequest, RunRequest
from genai_pipeline.steps.documents import resolve_root
from genai_pipeline.steps.examples import format_group, format_report, list_groups
from genai_pipeline.steps.finetune_store import sha256
from genai_pipeline.steps.gate import (
    NoValidExamplesError,
    check_example,
    combine,
    count_tokens,
    estimate_usd,
    evaluate,
)
from genai_pipeline.store import Store

SYSTEM = "You write posts for tests."
MAX_TOKENS = 200


def chat(*pairs: tuple[str, str]) -> str:
    """One JSONL line of messages from (role, content) pairs."""
    return json.dumps({"messages": [{"role": role, "content": content} for role, content in pairs]})


GOOD_TRAIN = chat(("user", "What is the gate?"), ("assistant", "It checks examples and prices them."))
GOOD_VALIDATION = chat(("user", "What does combine do?"), ("assistant", "It publishes the dataset."))
# The same example as GOOD_TRAIN, written with its keys in another order and other spacing.
SAME_AS_TRAIN = (
    '{"messages": [ {"content": "What is the gate?", "role": "user"},'
    '{"content": "It checks examples and prices them.",   "role": "assistant"} ]}'
)
BAD_LINES = [
    GOOD_TRAIN,
    "{not json",
    json.dumps({"prompt": "no messages here"}),
    chat(("robot", "beep"), ("assistant", "boop")),
    chat(("user", "   "), ("assistant", "an answer")),
    chat(("system", "sys"), ("user", "a question without an answer")),
    chat(("user", "q"), ("assistant", "a"), ("user", "and then the user spoke last")),
    chat(("user", "long one"), ("assistant", "word " * 400)),
]
EXAMPLES: dict[str, str | bytes] = {
    "train/short/lines.jsonl": "\n".join(BAD_LINES) + "\n",
    "train/long/post.txt": "A long post\nIts body, in a few words.\n",
    "validation/short/lines.jsonl": f"{SAME_AS_TRAIN}\n{GOOD_VALIDATION}\n",
}


def make_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Settings:
    """Settings from the environment only: a store and example folders under tmp_path."""
    return example_settings(
        monkeypatch,
        tmp_path,
        PIPELINE_FINE_TUNE__SYSTEM_PROMPT=SYSTEM,
        PIPELINE_FINE_TUNE__MAX_EXAMPLE_TOKENS=str(MAX_TOKENS),
        **env,
    )


def formatted(settings: Settings, run_id: str = "format-1") -> None:
    """Run the formatting steps as the format DAG does: list, each group, report."""
    request = RunRequest(run_id=run_id)
    for item in list_groups(fake_context(settings), request):
        format_group(fake_context(settings), item)
    format_report(fake_context(settings), request)


def prepared(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, files: dict[str, str | bytes] = EXAMPLES, **env: str
) -> Settings:
    write_tree(tmp_path / "examples", files)
    settings = make_settings(monkeypatch, tmp_path, **env)
    formatted(settings)
    return settings


def gate(run_id: str = "gate-1", *, price: float = 2.0, epochs: int = 3, budget: float = 100.0) -> GateRequest:
    return GateRequest(run_id=run_id, price_per_million_tokens=price, n_epochs=epochs, budget_usd=budget)


def files_under(settings: Settings, prefix: str) -> list[str]:
    root = Path(settings.store) / prefix
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


# -- validation ---------------------------------------------------------------------------------------------


def test_every_bad_line_is_reported_with_file_line_and_reason_and_the_valid_ones_go_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = prepared(monkeypatch, tmp_path)
    result = evaluate(fake_context(settings), gate())
    found = [(item["file"], item["line"], item["reason"]) for item in result.invalid]
    lines = "train/short/lines.jsonl"
    expected = [
        (lines, 2, "not valid JSON"),
        (lines, 3, 'expected an object with a non-empty "messages" list'),
        (lines, 4, "message 1 needs a role of assistant, system, tool, user"),
        (lines, 5, "message 1 needs non-empty text content"),
        (lines, 6, "no assistant message to learn from"),
        (lines, 7, "the last message is from the user, not the assistant"),
        (lines, 8, f"over the per-example limit of {MAX_TOKENS}"),
        ("validation/short/lines.jsonl", 1, "the same example is in the training set"),
    ]
    assert len(found) == len(expected) == result.invalid_total
    for (file, line, reason), (want_file, want_line, want_reason) in zip(found, expected, strict=True):
        assert (file, line) == (want_file, want_line)
        assert want_reason in reason, (line, reason)
    assert (result.train_examples, result.validation_examples) == (2, 1)

    # The stored report has every refusal; the run's own files hold only valid examples.
    store = Store(settings.store)
    report = store.read_json(layout.gate_run("gate-1", "report.json"))
    assert report["invalid"] == result.invalid and report["invalid_total"] == 8
    train = list(store.iter_jsonl(layout.gate_run("gate-1", "train.jsonl")))
    # Groups in the index's order (train/long, then train/short), lines in file order.
    assert [m["messages"][-1]["content"] for m in train] == [
        "Its body, in a few words.",
        "It checks examples and prices them.",
    ]
    validation = list(store.iter_jsonl(layout.gate_run("gate-1", "validation.jsonl")))
    assert validation == [json.loads(GOOD_VALIDATION)]


def test_check_example_returns_messages_and_tokens_or_the_reason() -> None:
    messages, tokens = check_example(GOOD_TRAIN, 7, encoding="o200k_base", max_tokens=MAX_TOKENS)
    assert messages == json.loads(GOOD_TRAIN)["messages"]
    assert tokens == count_tokens(messages, "o200k_base")
    with pytest.raises(InvalidTrainingLine, match=r"^line 7: \d+ tokens, over the per-example limit of 16$"):
        check_example(GOOD_TRAIN, 7, encoding="o200k_base", max_tokens=16)


@pytest.mark.parametrize("empty", ["train", "validation"])
def test_a_split_with_nothing_valid_stops_the_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, empty: str) -> None:
    files = dict(EXAMPLES)
    if empty == "train":
        files["train/short/lines.jsonl"] = "{not json\n"
        files["train/long/post.txt"] = chat(("user", "only a question")) + "\n"
        files["train/long/post.jsonl"] = files.pop("train/long/post.txt")
    else:
        files["validation/short/lines.jsonl"] = f"{SAME_AS_TRAIN}\n[]\n"
    settings = prepared(monkeypatch, tmp_path, files)
    with pytest.raises(NoValidExamplesError, match=f"no valid {empty} example left"):
        evaluate(fake_context(settings), gate())
    assert files_under(settings, "finetune/datasets") == []


# -- tokens and cost ----------------------------------------------------------------------------------------


def test_token_count_matches_a_hand_count_with_o200k() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello, world!"},
        {"role": "assistant", "content": "Hi there."},
    ]
    enc = bpe_openai.get_encoding("o200k_base")
    by_hand = 3 + sum(3 + len(enc.encode(m["role"])) + len(enc.encode(m["content"])) for m in messages)
    # Each role is one token; "Be brief." 3, "Hello, world!" 4, "Hi there." 3.
    assert by_hand == 3 + 3 * (3 + 1) + 3 + 4 + 3 == 25
    assert count_tokens(messages, "o200k_base") == 25


def test_the_encoding_matters() -> None:
    messages = [{"role": "user", "content": "多言語テキストのトークン化"}, {"role": "assistant", "content": "はい"}]
    o200k, cl100k = count_tokens(messages, "o200k_base"), count_tokens(messages, "cl100k_base")
    assert o200k != cl100k
    cl = bpe_openai.get_encoding("cl100k_base")
    assert cl100k == 3 + sum(3 + len(cl.encode(m["role"])) + len(cl.encode(m["content"])) for m in messages)


def test_estimate_is_price_times_epochs_times_tokens_per_million() -> None:
    assert estimate_usd(250_000, 3, 2.5) == pytest.approx(1.875)
    assert estimate_usd(1_000_000, 1, 3.0) == pytest.approx(3.0)
    assert estimate_usd(123_456, 4, 8.0) == pytest.approx(8.0 * 4 * 123_456 / 1_000_000)
    assert estimate_usd(0, 3, 25.0) == 0


def test_evaluate_prices_the_training_tokens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = prepared(monkeypatch, tmp_path)
    result = evaluate(fake_context(settings), gate(price=2.5, epochs=4, budget=100.0))
    store = Store(settings.store)
    train = list(store.iter_jsonl(layout.gate_run("gate-1", "train.jsonl")))
    validation = list(store.iter_jsonl(layout.gate_run("gate-1", "validation.jsonl")))
    tokens = sum(count_tokens(row["messages"], "o200k_base") for row in train)
    assert result.billing_tokens == tokens > 0
    assert result.estimated_usd == round(2.5 * 4 * tokens / 1_000_000, 6)
    report = store.read_json(layout.gate_run("gate-1", "report.json"))
    assert report["validation_tokens"] == sum(count_tokens(row["messages"], "o200k_base") for row in validation)


def test_within_budget_at_the_boundary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = prepared(monkeypatch, tmp_path)
    tokens = evaluate(fake_context(settings), gate("probe")).billing_tokens
    cost = estimate_usd(tokens, 3, 2.0)
    assert evaluate(fake_context(settings), gate("at", budget=cost)).within_budget is True
    assert evaluate(fake_context(settings), gate("under", budget=cost - 1e-6)).within_budget is False
    assert evaluate(fake_context(settings), gate("free", price=0.0, budget=0.0)).within_budget is True


# -- publishing ---------------------------------------------------------------------------------------------


def test_evaluate_writes_nothing_under_datasets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = prepared(monkeypatch, tmp_path)
    evaluate(fake_context(settings), gate("manual__2025-01-01T00:00:00+00:00"))
    assert files_under(settings, "finetune/datasets") == []
    assert files_under(settings, "finetune/gate") == [
        "manual__2025-01-01T00_00_00_00_00/report.json",
        "manual__2025-01-01T00_00_00_00_00/train.jsonl",
        "manual__2025-01-01T00_00_00_00_00/validation.jsonl",
    ]


def test_combine_publishes_a_content_addressed_dataset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = prepared(monkeypatch, tmp_path)
    store = Store(settings.store)
    evaluation = evaluate(fake_context(settings), gate("gate-1"))
    first = combine(fake_context(settings), evaluation)
    train, validation = (store.read_bytes(layout.dataset(first.dataset, f"{s}.jsonl")) for s in ("train", "validation"))
    assert first.train_sha256 == sha256(train) and first.validation_sha256 == sha256(validation)
    assert first.dataset == sha256(f"{sha256(train)}:{sha256(validation)}".encode())[:16]
    assert (first.train_examples, first.validation_examples) == (2, 1)
    assert store.read_json(layout.LATEST_DATASET) == {"dataset": first.dataset}
    # combine can run again (an Airflow retry); the next gate run removes these staging copies.
    assert combine(fake_context(settings), evaluation) == first

    manifest = store.read_json(layout.dataset(first.dataset, "manifest.json"))
    source = tmp_path / "examples"
    listed = [("train", "train/long/post.txt", 1), ("train", "train/short/lines.jsonl", 8)]
    listed.append(("validation", "validation/short/lines.jsonl", 2))
    assert manifest["examples"] == [
        {"split": split, "file": file, "sha256": sha256((source / file).read_bytes()), "examples": count}
        for split, file, count in listed
    ]
    assert manifest["runs"] == {"format_examples": "format-1", "evaluate_examples": "gate-1"}
    assert (manifest["train_sha256"], manifest["validation_sha256"]) == (first.train_sha256, first.validation_sha256)

    # Same input, another run: the same key and bytes.
    second = combine(fake_context(settings), evaluate(fake_context(settings), gate("gate-2")))
    assert second.dataset == first.dataset
    assert "gate-1/train.jsonl" not in files_under(settings, "finetune/gate")
    assert "gate-1/report.json" in files_under(settings, "finetune/gate")
    assert store.read_bytes(layout.dataset(second.dataset, "train.jsonl")) == train

    # Other content: another key, and the first dataset stays.
    (source / "validation/short/more.txt").write_text("More\nAnother validation post.\n", encoding="utf-8")
    formatted(settings, "format-2")
    third = combine(fake_context(settings), evaluate(fake_context(settings), gate("gate-3")))
    assert third.dataset != first.dataset and third.validation_examples == 2
    names = ("manifest.json", "train.jsonl", "validation.jsonl")
    published = [f"{key}/{name}" for key in (first.dataset, third.dataset) for name in names]
    assert files_under(settings, "finetune/datasets") == sorted([*published, "latest.json"])


def test_combine_refuses_a_run_over_budget(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = prepared(monkeypatch, tmp_path)
    over = evaluate(fake_context(settings), gate(budget=0.0))
    assert over.within_budget is False
    with pytest.raises(ValueError, match="within budget"):
        combine(fake_context(settings), over)
    assert files_under(settings, "finetune/datasets") == []
    forged = Evaluation.model_validate({**over.model_dump(), "within_budget": False, "budget_usd": 1e9})
    with pytest.raises(ValueError):
        combine(fake_context(settings), forged)


def test_the_shipped_examples_pass_the_gate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if not Path(resolve_root("package://genai_pipeline/examples/train")).is_dir():
        pytest.skip("the package's examples/train folder is not there yet")
    settings = isolated_settings(monkeypatch, tmp_path)
    formatted(settings, "shipped")
    defaults = settings.fine_tune
    result = evaluate(
        fake_context(settings),
        gate(price=defaults.price_per_million_tokens, epochs=defaults.n_epochs, budget=defaults.budget_usd),
    )
    assert result.invalid == [] and result.within_budget
