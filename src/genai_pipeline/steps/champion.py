"""Champion/challenger: both models scored by the pipeline itself, on one held-out set, with the same metrics.

A job's own validation figures are not comparable across jobs (each is measured on its own validation
file), so neither is used here. Each model answers the held-out prompts greedily and is scored on:

- fact coverage: the share of prompts whose answer holds every fact the item names (case-insensitive);
- answer token F1: word overlap with the held-out reference answer (as in SQuAD), a token accuracy that any
  OpenAI-compatible endpoint allows; a loss on the reference would need its log-probabilities, which hosted
  chat completions do not return for given text.

The challenger wins on higher coverage, or equal coverage and an F1 gain of at least ``MIN_F1_GAIN``; a tie
keeps the champion. Every promotion is kept in the history; the current record names the champion.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import fsspec

from genai_pipeline.clients.openai_compat import make_openai_client
from genai_pipeline.config import Settings
from genai_pipeline.steps import finetune_store as layout
from genai_pipeline.steps import lineage
from genai_pipeline.steps.contracts import Challenger, Decision, ModelScores, Scored, ScoreRequest
from genai_pipeline.steps.documents import resolve_root
from genai_pipeline.steps.examples import chat_messages
from genai_pipeline.steps.finetune_store import safe_name, sha256
from genai_pipeline.store import Store

MIN_F1_GAIN = 0.01
PROMOTING = ("no_champion", "challenger_wins")


@dataclass(frozen=True)
class HeldoutItem:
    """One held-out prompt: the post's group and title, the facts its answer must hold, a reference answer."""

    group: str
    title: str
    facts: tuple[str, ...]
    answer: str


def load_heldout(data: bytes) -> list[HeldoutItem]:
    """Items of a held-out JSONL file, or ValueError naming the line that is wrong."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(f"held-out line {line}: not valid UTF-8") from None
    items = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            item = HeldoutItem(record["group"], record["title"], tuple(record["facts"]), record["answer"])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"held-out line {number}: needs JSON with group, title, facts, answer ({error})") from None
        facts = record["facts"]
        if not isinstance(facts, list) or not facts or not all(isinstance(f, str) and f.strip() for f in facts):
            raise ValueError(f"held-out line {number}: facts must be a non-empty list of strings")
        items.append(item)
    if not items:
        raise ValueError("the held-out set is empty: there is nothing to score models on")
    return items


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def token_f1(prediction: str, reference: str) -> float:
    """Bag-of-words F1 between an answer and the reference."""
    predicted, expected = Counter(_words(prediction)), Counter(_words(reference))
    common = sum((predicted & expected).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(predicted.values()), common / sum(expected.values())
    return 2 * precision * recall / (precision + recall)


def covers(answer: str, facts: tuple[str, ...]) -> bool:
    """Whether an answer states every fact (case-insensitive substring)."""
    lowered = answer.lower()
    return all(fact.lower() in lowered for fact in facts)


def score_answers(model: str, items: list[HeldoutItem], answers: list[str]) -> ModelScores:
    """One model's scores from its answers to the held-out items (same order)."""
    coverage = sum(covers(a, i.facts) for i, a in zip(items, answers, strict=True)) / len(items)
    f1 = sum(token_f1(a, i.answer) for i, a in zip(items, answers, strict=True)) / len(items)
    return ModelScores(model=model, fact_coverage=round(coverage, 4), answer_token_f1=round(f1, 4), items=len(items))


def decide(challenger: ModelScores, champion: ModelScores | None) -> tuple[str, str]:
    """The decision and its reason in words."""
    if champion is None:
        return "no_champion", "there is no champion yet: the challenger becomes the first"
    if challenger.model == champion.model:
        return "already_champion", f"{challenger.model} is already the champion"
    figures = (
        f"fact coverage {challenger.fact_coverage:.2f} vs {champion.fact_coverage:.2f}, "
        f"answer F1 {challenger.answer_token_f1:.3f} vs {champion.answer_token_f1:.3f}"
    )
    if challenger.fact_coverage > champion.fact_coverage or (
        challenger.fact_coverage == champion.fact_coverage
        # Scores carry 4 decimals: compare the gain at that precision (0.82 - 0.81 is 0.00999... in floats).
        and round(challenger.answer_token_f1 - champion.answer_token_f1, 4) >= MIN_F1_GAIN
    ):
        return "challenger_wins", f"the challenger is better: {figures}"
    return "challenger_loses", f"the champion stays: {figures}"


def answer(client: Any, settings: Settings, model: str, items: list[HeldoutItem]) -> list[str]:
    """Greedy answers of one model to every held-out prompt."""
    replies = []
    for item in items:
        reply = client.chat.completions.create(
            model=model,
            messages=chat_messages(settings.fine_tune.system_prompt, item.group, item.title),
            temperature=0,
            max_tokens=settings.fine_tune.score_max_tokens,
        )
        replies.append(reply.choices[0].message.content or "")
    return replies


def _challenger(store: Store, options: dict[str, Any]) -> Challenger:
    if options.get("challenger"):
        model = str(options["challenger"])
        key = layout.lineage(model)
        if not store.exists(key):
            raise KeyError(f"no fine-tuned model {model!r} with lineage in the store")
        return Challenger.model_validate(
            store.read_json(layout.model_file(store.read_json(key)["job_id"], "challenger.json"))
        )
    return Challenger.model_validate(store.read_json(layout.LATEST_CHALLENGER))


def champion_model(store: Store) -> str | None:
    """The model the current champion record names; None before the first promotion."""
    return store.read_json(layout.CHAMPION)["model"] if store.exists(layout.CHAMPION) else None


def score(settings: Settings, request: ScoreRequest) -> Scored:
    """Score the challenger and the current champion on the held-out set and decide; answers are stored."""
    store = Store(settings.store)
    challenger = _challenger(store, request.options)
    champion = champion_model(store)
    with fsspec.open(resolve_root(settings.fine_tune.heldout), "rb") as handle:
        data = handle.read()
    items = load_heldout(data)
    client = make_openai_client(settings)
    answers = {challenger.model: answer(client, settings, challenger.model, items)}
    if champion is not None and champion != challenger.model:
        answers[champion] = answer(client, settings, champion, items)
    challenger_scores = score_answers(challenger.model, items, answers[challenger.model])
    champion_scores = score_answers(champion, items, answers[champion]) if champion else None
    decision, reason = decide(challenger_scores, champion_scores)
    scored = Scored(
        run_id=request.run_id,
        heldout_sha256=sha256(data),
        challenger=challenger,
        challenger_scores=challenger_scores,
        champion=champion,
        champion_scores=champion_scores,
        decision=decision,
        reason=reason,
    )
    transcript = [
        {"title": item.title, "facts": list(item.facts), **{model: replies[i] for model, replies in answers.items()}}
        for i, item in enumerate(items)
    ]
    store.write_json(layout.decision(safe_name(request.run_id)), {**scored.model_dump(), "answers": transcript})
    return scored


def promote(settings: Settings, scored: Scored) -> Decision:
    """Make the challenger the champion: the current record, plus one history entry per promotion."""
    if scored.decision not in PROMOTING:
        raise ValueError(f"{scored.decision}: the challenger is not promoted; the branch should have kept the champion")
    store = Store(settings.store)
    manifest = store.read_json(scored.challenger.lineage_key)
    record = {
        "model": scored.challenger.model,
        "job_id": scored.challenger.job_id,
        "scores": {"challenger": scored.challenger_scores.model_dump(), "champion": _dump(scored.champion_scores)},
        "previous_champion": scored.champion,
        "decision": scored.decision,
        "reason": scored.reason,
        "heldout_sha256": scored.heldout_sha256,
        "dataset": manifest["dataset"],
        "lineage": scored.challenger.lineage_key,
        "run_id": scored.run_id,
        "promoted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # Numbered, so the history reads in promotion order even for two promotions in one second.
    number = len(store.keys(layout.CHAMPION_HISTORY)) + 1
    entry = f"{layout.CHAMPION_HISTORY}/{number:06d}-{safe_name(record['model'])}.json"
    store.write_json(entry, record)
    store.write_json(layout.CHAMPION, record)
    return Decision(
        decision=scored.decision,
        champion=record["model"],
        record_key=layout.CHAMPION,
        lineage=lineage.lineage(
            [lineage.model(settings, record["model"])], [lineage.store_file(settings, layout.CHAMPION)]
        ),
    )


def keep_champion(settings: Settings, scored: Scored) -> Decision:
    """The champion stays; the scores and reason are in the run's decision record."""
    if scored.decision in PROMOTING or scored.champion is None:
        raise ValueError(f"{scored.decision}: the challenger must be promoted, not kept out")
    return Decision(
        decision=scored.decision, champion=scored.champion, record_key=layout.decision(safe_name(scored.run_id))
    )


def _dump(scores: ModelScores | None) -> dict[str, Any] | None:
    return scores.model_dump() if scores else None


def history(store: Store) -> list[dict[str, Any]]:
    """Every promotion, oldest first."""
    return [store.read_json(f"{layout.CHAMPION_HISTORY}/{name}") for name in store.keys(layout.CHAMPION_HISTORY)]
