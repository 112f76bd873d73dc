"""Champion/challenger: both models scored by the pipeline itself, on one held-out set, with the same metrics.

A job's own validation figures are not comparable across jobs (each is measured on its own validation
file), so neither is used here. Each model answers the held-out prompts greedily, asked exactly as generation
asks (the title and the item's numbered sources, steps/prompt.py), and each answer is read for:

- fact coverage: whether it holds every fact the item names (case-insensitive);
- citation share: the share of its sentences with a valid ``[n]`` citation naming one of the item's sources;
- groundedness: the share of its cited sentences that a source they cite supports, by the post quality gate's
  own support check (steps/post_quality.py, with the collection's embedder and its threshold); an answer that
  cites nothing has none grounded;
- answer token F1: word overlap with the held-out reference answer (as in SQuAD), a token accuracy that any
  OpenAI-compatible endpoint allows; a loss on the reference would need its log-probabilities, which hosted
  chat completions do not return for given text.

Each term is averaged over the items. A model's score is the weighted mean of fact coverage, citation share and
groundedness (``PIPELINE_FINE_TUNE__SCORE_WEIGHTS__*``). The challenger wins on a higher score, or an equal
score and an F1 gain of at least ``MIN_F1_GAIN``; a tie keeps the champion. Every promotion is kept in the
history; the current record names the champion.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import fsspec

from genai_pipeline.config import PostQualitySettings, ScoreWeights, Settings
from genai_pipeline.steps import finetune_store as layout
from genai_pipeline.steps import lineage
from genai_pipeline.steps.context import StepContext
from genai_pipeline.steps.contracts import Challenger, Decision, ModelScores, Scored, ScoreRequest
from genai_pipeline.steps.decisions import ChampionDecision
from genai_pipeline.steps.documents import resolve_root
from genai_pipeline.steps.finetune_store import champion_model, sha256
from genai_pipeline.steps.keys import safe_name
from genai_pipeline.steps.post_quality import Embed, as_written
from genai_pipeline.steps.prompt import Source, build_messages
from genai_pipeline.store import Store

MIN_F1_GAIN = 0.01
DIGITS = 4


@dataclass(frozen=True)
class HeldoutItem:
    """One held-out prompt (group, title, numbered sources), the facts its answer must hold, a reference answer."""

    group: str
    title: str
    facts: tuple[str, ...]
    answer: str
    sources: tuple[Source, ...]


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
            fields = record["group"], record["title"], record["facts"], record["answer"], record["sources"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(
                f"held-out line {number}: needs JSON with group, title, facts, answer, sources ({error})"
            ) from None
        group, title, facts, reference, sources = fields
        if not isinstance(facts, list) or not facts or not all(isinstance(f, str) and f.strip() for f in facts):
            raise ValueError(f"held-out line {number}: facts must be a non-empty list of strings")
        items.append(HeldoutItem(group, title, tuple(facts), reference, _heldout_sources(sources, number)))
    if not items:
        raise ValueError("the held-out set is empty: there is nothing to score models on")
    return items


def _heldout_sources(sources: Any, number: int) -> tuple[Source, ...]:
    """An item's sources, numbered from 1 in the order given: each an object with title, text and a section."""
    if not isinstance(sources, list) or not sources:
        raise ValueError(f"held-out line {number}: sources must be a non-empty list, the prompt's numbered sources")
    parsed = []
    for n, source in enumerate(sources, start=1):
        if not isinstance(source, dict) or not all(
            isinstance(source.get(key), str) and source[key].strip() for key in ("title", "text")
        ):
            raise ValueError(f"held-out line {number}: source {n} needs a title and a text")
        parsed.append(
            Source(
                uri=f"heldout:{number}",
                chunk_index=n,
                section=str(source.get("section") or ""),
                title=source["title"],
                text=source["text"],
                distance=0.0,
            )
        )
    return tuple(parsed)


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


@dataclass(frozen=True)
class AnswerScores:
    """What one answer to one held-out item scores on each term."""

    fact_coverage: float
    citation_share: float
    groundedness: float
    answer_token_f1: float


def score_answer(item: HeldoutItem, answer: str, embed: Embed, quality: PostQualitySettings) -> AnswerScores:
    """One answer's terms; citations and support are read by the post quality gate's checks, as written."""
    sentences = as_written(answer, [s.text for s in item.sources], embed, quality)
    cited = [s for s in sentences if s.citations]
    return AnswerScores(
        fact_coverage=float(covers(answer, item.facts)),
        citation_share=len(cited) / len(sentences) if sentences else 0.0,
        groundedness=sum(s.grounded for s in cited) / len(cited) if cited else 0.0,
        answer_token_f1=token_f1(answer, item.answer),
    )


def combined(weights: ScoreWeights, fact_coverage: float, citation_share: float, groundedness: float) -> float:
    """The score: the weighted mean of fact coverage, citation share and groundedness."""
    total = weights.fact_coverage + weights.citations + weights.groundedness
    weighted = (
        weights.fact_coverage * fact_coverage + weights.citations * citation_share + weights.groundedness * groundedness
    )
    return weighted / total


def model_scores(model: str, answers: Sequence[AnswerScores], weights: ScoreWeights) -> ModelScores:
    """One model's scores: each term averaged over the items, then combined (from the rounded terms, as recorded)."""
    terms = {
        name: round(sum(getattr(a, name) for a in answers) / len(answers), DIGITS)
        for name in ("fact_coverage", "citation_share", "groundedness", "answer_token_f1")
    }
    score = combined(weights, terms["fact_coverage"], terms["citation_share"], terms["groundedness"])
    return ModelScores(model=model, **terms, score=round(score, DIGITS), items=len(answers))


def decide(challenger: ModelScores, champion: ModelScores | None) -> tuple[ChampionDecision, str]:
    """The decision and its reason in words."""
    if champion is None:
        return ChampionDecision.NO_CHAMPION, "there is no champion yet: the challenger becomes the first"
    if challenger.model == champion.model:
        return ChampionDecision.ALREADY_CHAMPION, f"{challenger.model} is already the champion"
    figures = (
        f"score {challenger.score:.3f} vs {champion.score:.3f} "
        f"(fact coverage {challenger.fact_coverage:.2f} vs {champion.fact_coverage:.2f}, "
        f"citations {challenger.citation_share:.2f} vs {champion.citation_share:.2f}, "
        f"groundedness {challenger.groundedness:.2f} vs {champion.groundedness:.2f}), "
        f"answer F1 {challenger.answer_token_f1:.3f} vs {champion.answer_token_f1:.3f}"
    )
    if challenger.score > champion.score or (
        challenger.score == champion.score
        # Scores carry 4 decimals: compare the gain at that precision (0.82 - 0.81 is 0.00999... in floats).
        and round(challenger.answer_token_f1 - champion.answer_token_f1, DIGITS) >= MIN_F1_GAIN
    ):
        return ChampionDecision.CHALLENGER_WINS, f"the challenger is better: {figures}"
    return ChampionDecision.CHALLENGER_LOSES, f"the champion stays: {figures}"


def answer(client: Any, settings: Settings, model: str, items: list[HeldoutItem]) -> list[str]:
    """Greedy answers of one model to every held-out prompt, asked as generation asks."""
    replies = []
    for item in items:
        reply = client.chat.completions.create(
            model=model,
            messages=build_messages(settings.fine_tune.system_prompt, item.group, item.title, item.sources),
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


def score(ctx: StepContext, request: ScoreRequest) -> Scored:
    """Score the challenger and the current champion on the held-out set and decide; answers are stored."""
    settings, store = ctx.settings, ctx.store
    challenger = _challenger(store, request.options)
    champion = champion_model(store)
    with fsspec.open(resolve_root(settings.fine_tune.heldout), "rb") as handle:
        data = handle.read()
    items = load_heldout(data)
    client = ctx.openai
    answers = {challenger.model: answer(client, settings, challenger.model, items)}
    if champion is not None and champion != challenger.model:
        answers[champion] = answer(client, settings, champion, items)
    embed, quality = ctx.embedder.embed, settings.generation.quality
    per_item = {
        model: [score_answer(item, text, embed, quality) for item, text in zip(items, replies, strict=True)]
        for model, replies in answers.items()
    }
    weights = settings.fine_tune.score_weights
    challenger_scores = model_scores(challenger.model, per_item[challenger.model], weights)
    champion_scores = model_scores(champion, per_item[champion], weights) if champion else None
    decision, reason = decide(challenger_scores, champion_scores)
    scored = Scored(
        run_id=request.run_id,
        heldout_sha256=sha256(data),
        challenger=challenger,
        challenger_scores=challenger_scores,
        champion=champion,
        champion_scores=champion_scores,
        score_weights=weights.model_dump(),
        decision=decision,
        reason=reason,
    )
    transcript = [
        {
            "title": item.title,
            "facts": list(item.facts),
            **{model: replies[i] for model, replies in answers.items()},
            "scores": {model: asdict(figures[i]) for model, figures in per_item.items()},
        }
        for i, item in enumerate(items)
    ]
    store.write_json(layout.decision(safe_name(request.run_id)), {**scored.model_dump(), "answers": transcript})
    return scored


def promote(ctx: StepContext, scored: Scored) -> Decision:
    """Make the challenger the champion: the current record, plus one history entry per promotion."""
    if not scored.decision.promotes:
        raise ValueError(f"{scored.decision}: the challenger is not promoted; the branch should have kept the champion")
    settings, store = ctx.settings, ctx.store
    manifest = store.read_json(scored.challenger.lineage_key)
    record = {
        "model": scored.challenger.model,
        "job_id": scored.challenger.job_id,
        "scores": {"challenger": scored.challenger_scores.model_dump(), "champion": _dump(scored.champion_scores)},
        "score_weights": scored.score_weights,
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


def keep_champion(_: StepContext, scored: Scored) -> Decision:
    """The champion stays; the scores and reason are in the run's decision record."""
    if scored.decision.promotes or scored.champion is None:
        raise ValueError(f"{scored.decision}: the challenger must be promoted, not kept out")
    return Decision(
        decision=scored.decision, champion=scored.champion, record_key=layout.decision(safe_name(scored.run_id))
    )


def _dump(scores: ModelScores | None) -> dict[str, Any] | None:
    return scores.model_dump() if scores else None


def history(store: Store) -> list[dict[str, Any]]:
    """Every promotion, oldest first."""
    return [store.read_json(f"{layout.CHAMPION_HISTORY}/{name}") for name in store.keys(layout.CHAMPION_HISTORY)]
