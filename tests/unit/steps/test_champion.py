"""Champion/challenger on plain values and a tmp store: metrics, the decision, promotion and the DAG branches."""

from __future__ import annotations

import json
import re
import time
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from conftest import isolated_settings
from fakes import InMemoryOpenAI, fake_context
from genai_pipeline.config import PostQualitySettings, ScoreWeights, Settings
from genai_pipeline.orchestration.fine_tune_tasks import budget_branch, champion_branch
from genai_pipeline.steps import champion
from genai_pipeline.steps import finetune_store as layout
from genai_pipeline.steps.champion import (
    AnswerScores,
    HeldoutItem,
    combined,
    covers,
    decide,
    history,
    keep_champion,
    load_heldout,
    model_scores,
    promote,
    score,
    score_answer,
    token_f1,
)
from genai_pipeline.steps.contracts import Challenger, Evaluation, ModelScores, Scored, ScoreRequest
from genai_pipeline.steps.decisions import FineTuneTask
from genai_pipeline.steps.documents import resolve_root
from genai_pipeline.steps.prompt import INSTRUCTIONS, Source
from genai_pipeline.store import Store

FIRST, SECOND = "ft:gpt-4o-mini:pipeline:first", "ft:gpt-4o-mini:pipeline:second"
QUALITY = PostQualitySettings()
WEIGHTS = ScoreWeights()


def make_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    return isolated_settings(monkeypatch, tmp_path)


def scores(model: str, coverage: float, f1: float, cited: float = 0.0, grounded: float = 0.0) -> ModelScores:
    return ModelScores(
        model=model,
        fact_coverage=coverage,
        citation_share=cited,
        groundedness=grounded,
        score=round(combined(WEIGHTS, coverage, cited, grounded), 4),
        answer_token_f1=f1,
        items=4,
    )


def challenger(model: str, job_id: str) -> Challenger:
    return Challenger(
        model=model,
        job_id=job_id,
        dataset=f"dataset-of-{job_id}",
        metrics_key=layout.model_file(job_id, "metrics.json"),
        plot_key=layout.model_file(job_id, "loss.png"),
        lineage_key=layout.lineage(model),
        final_train_loss=0.5,
        final_valid_loss=0.7,
    )


def scored(decision: str, model: str = SECOND, job_id: str = "ftjob-2", champ: str | None = FIRST) -> Scored:
    return Scored(
        run_id="manual__2025-01-01T00:00:00+00:00",
        heldout_sha256="f" * 64,
        challenger=challenger(model, job_id),
        challenger_scores=scores(model, 0.75, 0.5),
        champion=champ,
        champion_scores=scores(champ, 0.5, 0.4) if champ else None,
        score_weights=WEIGHTS.model_dump(),
        decision=decision,
        reason=f"because: {decision}",
    )


def write_lineage(store: Store, model: str, job_id: str) -> dict:
    manifest = {"model": model, "job_id": job_id, "dataset": {"key": f"dataset-of-{job_id}", "train_examples": 3}}
    store.write_json(layout.lineage(model), manifest)
    return manifest


class Clock:
    """A stand-in for the ``time`` module in champion: gmtime at a chosen second."""

    def __init__(self, start: float, step: float) -> None:
        self.now, self.step = start, step

    def tick(self) -> None:
        self.now += self.step

    def module(self) -> SimpleNamespace:
        return SimpleNamespace(strftime=time.strftime, gmtime=lambda *_: time.gmtime(self.now))


# -- the held-out set ---------------------------------------------------------------------------------------


PORT = {"title": "Model server", "section": "Port", "text": "The server listens on port 8088."}


def item(**fields) -> str:
    base = {"group": "short", "title": "T", "facts": ["8088"], "answer": "Port 8088 [1].", "sources": [PORT]}
    return json.dumps(base | fields)


def heldout_source(line: int, n: int, title: str, section: str, text: str) -> Source:
    return Source(uri=f"heldout:{line}", chunk_index=n, section=section, title=title, text=text, distance=0.0)


def test_load_heldout_reads_items_with_their_numbered_sources_and_skips_blank_lines() -> None:
    second = item(group="long", title="U", facts=["a", "B"], answer="x", sources=[PORT, {"title": "V", "text": "y"}])
    assert load_heldout(f"{item()}\n\n{second}\n".encode()) == [
        HeldoutItem("short", "T", ("8088",), "Port 8088 [1].", (heldout_source(1, 1, *PORT.values()),)),
        HeldoutItem(
            "long",
            "U",
            ("a", "B"),
            "x",
            (heldout_source(3, 1, *PORT.values()), heldout_source(3, 2, "V", "", "y")),
        ),
    ]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "held-out line 3: needs JSON with group, title, facts, answer, sources"),
        (json.dumps({"group": "short", "title": "T", "facts": ["a"], "answer": "A"}), "held-out line 3: needs JSON"),
        (item(sources=[]), "held-out line 3: sources must be a non-empty list"),
        (item(sources="the docs"), "held-out line 3: sources must be a non-empty list"),
        (item(sources=[PORT, {"title": "No text"}]), "held-out line 3: source 2 needs a title and a text"),
        (item(sources=[{"title": " ", "text": "x"}]), "held-out line 3: source 1 needs a title and a text"),
        (json.dumps({"group": "short", "title": "T", "answer": "A"}), "held-out line 3: needs JSON"),
        ("[1, 2]", "held-out line 3: needs JSON"),
        (item(facts=[]), "held-out line 3: facts must be a non-empty list of strings"),
        (item(facts=["ok", "  "]), "held-out line 3: facts must be"),
        (item(facts=[8088]), "held-out line 3: facts must be"),
    ],
)
def test_load_heldout_names_the_bad_line(bad: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_heldout(f"{item()}\n\n{bad}\n".encode())


def test_load_heldout_refuses_facts_given_as_a_string() -> None:
    with pytest.raises(ValueError, match="held-out line 1: facts must be a non-empty list of strings"):
        load_heldout(item(facts="8088").encode())


def test_an_empty_heldout_set_is_refused() -> None:
    with pytest.raises(ValueError, match="the held-out set is empty"):
        load_heldout(b"\n  \n")


# -- the metrics --------------------------------------------------------------------------------------------


def test_token_f1_on_small_strings() -> None:
    assert token_f1("The cat sat.", "the CAT sat") == 1.0
    assert token_f1("dogs bark", "the cat sat") == 0.0
    assert token_f1("", "the cat sat") == 0.0
    # common {the, cat} = 2; precision 2/3, recall 2/4: F1 = 2 * (2/3 * 1/2) / (2/3 + 1/2) = 4/7.
    assert token_f1("the cat sat", "the cat ran away") == pytest.approx(4 / 7)
    # Counts are clipped: "the the the" against "the cat" shares one "the"; P 1/3, R 1/2 -> 0.4.
    assert token_f1("the the the", "the cat") == pytest.approx(0.4)


def test_covers_is_case_insensitive_and_needs_every_fact() -> None:
    assert covers("The server listens on PORT 8088 by default.", ("port 8088",))
    assert covers("KnowledgeBase at 03:00 UTC", ("knowledgebase", "03:00 utc"))
    assert not covers("KnowledgeBase, daily", ("knowledgebase", "03:00 utc"))
    assert not covers("", ("anything",))


def topic_embed(texts: list[str]) -> np.ndarray:
    """A fake embedder: one axis per topic word, so a sentence is similar to what shares its topic words."""
    axes = ("port", "weaviate", "markdown")
    rows = np.array([[1.0 if axis in t.lower() else 0.0 for axis in axes] + [0.1] for t in texts])
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


SOURCES = (
    Source("kb/a.md", 0, "Port", "Server", "The server listens on port 8088.", 0.1),
    Source("kb/b.md", 0, "Storage", "Weaviate", "Chunks are stored in Weaviate.", 0.2),
)


def held(facts: tuple[str, ...] = ("8088",), answer: str = "The port is 8088 [1].") -> HeldoutItem:
    return HeldoutItem("short", "A", facts, answer, SOURCES)


def rate(model: str, items: list[HeldoutItem], answers: list[str], embed: Any = topic_embed) -> ModelScores:
    """A model's scores from its answers, with the default weights and the gate's default settings."""
    return model_scores(
        model, [score_answer(i, a, embed, QUALITY) for i, a in zip(items, answers, strict=True)], WEIGHTS
    )


def uncited(text: str) -> str:
    return re.sub(r"\s*\[\d+\]", "", text)


@pytest.mark.parametrize(
    ("answer", "cited", "grounded"),
    [
        ("The port is 8088 [1]. Chunks live in Weaviate [2].", 1.0, 1.0),
        ("The port is 8088 [1]. Chunks live in Weaviate.", 0.5, 1.0),  # the uncited sentence is not repaired
        ("The port is 8088 [1]. Chunks live in Weaviate [7].", 0.5, 1.0),  # [7] names no source: not a citation
        ("The port is 8088 [1]. Chunks live in Weaviate [1].", 1.0, 0.5),  # source 1 does not support the second
        ("The port is 8088 [2]. Chunks live in Weaviate [1].", 1.0, 0.0),  # each cites the other's source
        ("The port is 8088. Chunks live in Weaviate.", 0.0, 0.0),  # nothing cited: nothing grounded
        ("The port is 8088 [1]. The port is 8088 [1].", 1.0, 1.0),  # repeats are the gate's business, not the score's
        ("", 0.0, 0.0),
    ],
)
def test_an_answer_is_read_for_valid_citations_and_for_support_by_the_source_it_cites(
    answer: str, cited: float, grounded: float
) -> None:
    figures = score_answer(held(), answer, topic_embed, QUALITY)
    assert (figures.citation_share, figures.groundedness) == (cited, grounded)


def test_groundedness_uses_the_gates_support_check_and_its_threshold() -> None:
    answer = "Chunks live in Weaviate, on the port [2]."  # cosine 0.71 to either source with this embedder
    assert score_answer(held(), answer, topic_embed, QUALITY).groundedness == 1.0
    strict = PostQualitySettings(support_threshold=0.9)
    assert score_answer(held(), answer, topic_embed, strict).groundedness == 0.0
    # Named code-like terms the cited source lacks are invented, whatever the similarity says.
    assert score_answer(held(), "The port is set by `PORT_NUMBER` [1].", topic_embed, QUALITY).groundedness == 0.0


def test_model_scores_average_each_term_over_the_items_and_weigh_three_into_the_score() -> None:
    items = [held(), held(("zeta", "omega"), "zeta omega psi")]
    # The second answer misses "omega" and cites nothing; its F1 against "zeta omega psi": P 1/2, R 1/3 -> 0.4.
    answers = ["The port is 8088 [1].", "zeta only"]
    result = rate("m", items, answers)
    # (0.5 * 0.5 + 0.25 * 0.5 + 0.25 * 0.5) / (0.5 + 0.25 + 0.25)
    assert result == ModelScores(
        model="m",
        fact_coverage=0.5,
        citation_share=0.5,
        groundedness=0.5,
        score=0.5,
        answer_token_f1=round((token_f1(answers[0], items[0].answer) + 0.4) / 2, 4),
        items=2,
    )
    weights = ScoreWeights(fact_coverage=0, citations=1, groundedness=3)
    answers_scores = [AnswerScores(1.0, 0.5, 1.0, 0.2), AnswerScores(1.0, 0.0, 0.0, 0.4)]
    assert model_scores("m", answers_scores, weights).score == round((1 * 0.25 + 3 * 0.5) / 4, 4)


def test_the_weights_are_settings_and_cannot_all_be_zero(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = isolated_settings(monkeypatch, tmp_path, PIPELINE_FINE_TUNE__SCORE_WEIGHTS__GROUNDEDNESS="0.5")
    assert settings.fine_tune.score_weights == ScoreWeights(fact_coverage=0.5, citations=0.25, groundedness=0.5)
    with pytest.raises(ValueError, match="at least one score weight must be above 0"):
        ScoreWeights(fact_coverage=0, citations=0, groundedness=0)
    with pytest.raises(ValueError):
        ScoreWeights(citations=-1)


def test_of_two_challengers_with_the_same_fact_coverage_the_one_that_cites_groundedly_wins() -> None:
    items = [held(), held(("weaviate",), "Chunks are stored in Weaviate [2].")]
    answer_sets = {
        "grounded": ["The port is 8088 [1].", "Chunks live in Weaviate [2]."],
        "miscited": ["The port is 8088 [2].", "Chunks live in Weaviate [1]."],  # valid numbers, wrong sources
        "uncited": ["The port is 8088.", "Chunks live in Weaviate."],
    }
    result = {name: rate(name, items, texts) for name, texts in answer_sets.items()}
    assert {r.fact_coverage for r in result.values()} == {1.0}
    assert result["grounded"].score > result["miscited"].score > result["uncited"].score
    assert decide(result["grounded"], result["uncited"])[0] == "challenger_wins"
    assert decide(result["grounded"], result["miscited"])[0] == "challenger_wins"
    assert decide(result["uncited"], result["grounded"])[0] == "challenger_loses"
    # The miscited answers cite validly but are not grounded: the citation term alone does not win.
    assert (result["miscited"].citation_share, result["miscited"].groundedness) == (1.0, 0.0)
    assert decide(result["miscited"], result["grounded"])[0] == "challenger_loses"


@cache
def minilm():
    from genai_pipeline.models.embeddings import make_embedder

    return make_embedder(Settings())


def shipped_heldout() -> list[HeldoutItem]:
    return load_heldout(Path(resolve_root(Settings().fine_tune.heldout)).read_bytes())


def test_the_shipped_reference_answers_are_cited_and_grounded_and_lose_both_terms_without_citations() -> None:
    """With the collection's embedder (MiniLM): the held-out set rewards what its references do."""
    items = shipped_heldout()
    cited = rate("ref", items, [i.answer for i in items], minilm().embed)
    assert (cited.fact_coverage, cited.citation_share, cited.groundedness, cited.score) == (1.0, 1.0, 1.0, 1.0)
    bare = rate("bare", items, [uncited(i.answer) for i in items], minilm().embed)
    assert (bare.fact_coverage, bare.citation_share, bare.groundedness) == (1.0, 0.0, 0.0)
    assert bare.score == 0.5 < cited.score


def test_score_asks_with_the_items_sources_and_records_both_terms_in_the_decision_and_the_champion(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The challenger cites as the references do, the champion states the same facts uncited: the challenger wins."""
    settings = make_settings(monkeypatch, tmp_path)
    store = Store(settings.store)
    store.write_json(layout.LATEST_CHALLENGER, challenger(SECOND, "ftjob-2").model_dump())
    store.write_json(layout.CHAMPION, {"model": FIRST})
    write_lineage(store, SECOND, "ftjob-2")
    items = shipped_heldout()
    replies = {SECOND: {i.title: i.answer for i in items}, FIRST: {i.title: uncited(i.answer) for i in items}}
    asked: list[list[dict]] = []

    def reply(model: str, messages: list[dict]) -> str:
        asked.append(messages)
        return replies[model][messages[1]["content"].split("titled: ", 1)[1].split("\n", 1)[0]]

    context = fake_context(settings, openai=InMemoryOpenAI(reply=reply))
    scored = score(context, ScoreRequest(run_id="manual__1", options={}))
    assert len(asked) == 2 * len(items)
    for messages, item in zip(asked, items * 2, strict=True):  # asked as generation asks: the sources, fenced
        assert INSTRUCTIONS in messages[1]["content"] and all(s.text in messages[1]["content"] for s in item.sources)
    new, old = scored.challenger_scores, scored.champion_scores
    assert old is not None and new.fact_coverage == old.fact_coverage == 1.0
    assert (new.citation_share, new.groundedness, new.score) == (1.0, 1.0, 1.0)
    assert (old.citation_share, old.groundedness, old.score) == (0.0, 0.0, 0.5)
    assert scored.decision == "challenger_wins" and "citations 1.00 vs 0.00" in scored.reason

    record = store.read_json(layout.decision("manual__1"))
    assert record["challenger_scores"]["groundedness"] == 1.0 and record["champion_scores"]["citation_share"] == 0.0
    assert record["score_weights"] == {"fact_coverage": 0.5, "citations": 0.25, "groundedness": 0.25}
    first = record["answers"][0]
    assert first[SECOND] == items[0].answer and first["scores"][SECOND]["citation_share"] == 1.0
    assert first["scores"][FIRST] == {
        "fact_coverage": 1.0,
        "citation_share": 0.0,
        "groundedness": 0.0,
        "answer_token_f1": first["scores"][FIRST]["answer_token_f1"],
    }
    promote(fake_context(settings), scored)
    current = store.read_json(layout.CHAMPION)
    assert current["scores"]["challenger"]["citation_share"] == 1.0 and current["scores"]["champion"]["score"] == 0.5
    assert current["score_weights"] == record["score_weights"]


# -- the decision -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("challenger_scores", "champion_scores", "expected"),
    [
        ((0.5, 0.5), None, "no_champion"),
        ((0.75, 0.1), (0.5, 0.9), "challenger_wins"),  # higher coverage wins even with a worse F1
        ((0.5, 0.52), (0.5, 0.5), "challenger_wins"),
        ((0.5, 0.51), (0.5, 0.5), "challenger_wins"),  # a gain of exactly MIN_F1_GAIN
        ((0.5, 0.509), (0.5, 0.5), "challenger_loses"),
        ((0.5, 0.5), (0.5, 0.5), "challenger_loses"),  # a tie keeps the champion
        ((0.25, 0.99), (0.5, 0.2), "challenger_loses"),  # lower coverage loses even with a better F1
    ],
)
def test_decide(challenger_scores: tuple, champion_scores: tuple | None, expected: str) -> None:
    champ = scores(FIRST, *champion_scores) if champion_scores else None
    decision, reason = decide(scores(SECOND, *challenger_scores), champ)
    assert decision == expected
    assert reason


def test_decide_knows_the_champion_itself() -> None:
    assert decide(scores(FIRST, 0.1, 0.1), scores(FIRST, 0.9, 0.9))[0] == "already_champion"


def test_a_gain_of_exactly_min_f1_gain_wins_for_any_values() -> None:
    assert decide(scores(SECOND, 0.5, 0.82), scores(FIRST, 0.5, 0.81))[0] == "challenger_wins"


# -- promotion ----------------------------------------------------------------------------------------------


def test_promote_writes_the_current_record_and_one_history_entry_per_promotion(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = make_settings(monkeypatch, tmp_path)
    store = Store(settings.store)
    clock = Clock(start=1_700_000_000, step=60)
    monkeypatch.setattr(champion, "time", clock.module())
    first_lineage = write_lineage(store, FIRST, "ftjob-1")
    second_lineage = write_lineage(store, SECOND, "ftjob-2")

    first = promote(fake_context(settings), scored("no_champion", FIRST, "ftjob-1", champ=None))
    assert (first.decision, first.champion, first.record_key) == ("no_champion", FIRST, layout.CHAMPION)
    current = store.read_json(layout.CHAMPION)
    assert current["model"] == FIRST and current["job_id"] == "ftjob-1"
    assert current["dataset"] == first_lineage["dataset"]
    assert current["lineage"] == layout.lineage(FIRST)
    assert current["previous_champion"] is None and current["scores"]["champion"] is None
    assert current["promoted_at"] == "2023-11-14T22:13:20Z"
    assert history(store) == [current]

    clock.tick()
    second = promote(fake_context(settings), scored("challenger_wins", SECOND, "ftjob-2", champ=FIRST))
    assert second.champion == SECOND
    current = store.read_json(layout.CHAMPION)
    assert current["model"] == SECOND and current["previous_champion"] == FIRST
    assert current["dataset"] == second_lineage["dataset"]
    assert current["scores"]["challenger"]["model"] == SECOND and current["scores"]["champion"]["model"] == FIRST
    assert current["reason"] == "because: challenger_wins" and current["heldout_sha256"] == "f" * 64
    entries = history(store)
    assert [e["model"] for e in entries] == [FIRST, SECOND]
    assert entries[-1] == current
    assert len(store.keys(layout.CHAMPION_HISTORY)) == 2


def test_history_is_oldest_first_within_one_second(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = make_settings(monkeypatch, tmp_path)
    store = Store(settings.store)
    monkeypatch.setattr(champion, "time", Clock(start=1_700_000_000, step=0).module())
    write_lineage(store, FIRST, "ftjob-1")
    write_lineage(store, SECOND, "ftjob-2")
    promote(fake_context(settings), scored("no_champion", SECOND, "ftjob-2", champ=None))
    promote(fake_context(settings), scored("challenger_wins", FIRST, "ftjob-1", champ=SECOND))
    assert [e["model"] for e in history(store)] == [SECOND, FIRST]


@pytest.mark.parametrize("decision", ["challenger_loses", "already_champion"])
def test_promote_refuses_a_decision_that_keeps_the_champion(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, decision: str
) -> None:
    settings = make_settings(monkeypatch, tmp_path)
    store = Store(settings.store)
    write_lineage(store, SECOND, "ftjob-2")
    with pytest.raises(ValueError, match=f"{decision}: the challenger is not promoted"):
        promote(fake_context(settings), scored(decision))
    assert not store.exists(layout.CHAMPION)
    assert history(store) == []


def test_keep_champion_points_at_the_runs_decision_record(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = make_settings(monkeypatch, tmp_path)
    kept = keep_champion(fake_context(settings), scored("challenger_loses"))
    assert (kept.decision, kept.champion) == ("challenger_loses", FIRST)
    assert kept.record_key == layout.decision("manual__2025-01-01T00_00_00_00_00")
    already = keep_champion(fake_context(settings), scored("already_champion", FIRST, "ftjob-1", champ=FIRST))
    assert already.champion == FIRST


@pytest.mark.parametrize(
    "case", [("no_champion", None), ("challenger_wins", FIRST)], ids=["no_champion", "challenger_wins"]
)
def test_keep_champion_refuses_a_promoting_decision(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, case: tuple[str, str | None]
) -> None:
    settings = make_settings(monkeypatch, tmp_path)
    decision, champ = case
    with pytest.raises(ValueError, match="must be promoted"):
        keep_champion(fake_context(settings), scored(decision, champ=champ))


# -- the DAG branches ---------------------------------------------------------------------------------------


def evaluation(within_budget: bool) -> dict:
    return Evaluation(
        run_key="gate-1",
        run_id="gate-1",
        train_examples=10,
        validation_examples=2,
        invalid=[],
        invalid_total=0,
        billing_tokens=1_000_000,
        n_epochs=3,
        price_per_million_tokens=2.0,
        estimated_usd=6.0,
        budget_usd=6.0 if within_budget else 5.0,
        within_budget=within_budget,
    ).model_dump(mode="json")


def test_budget_branch() -> None:
    assert budget_branch(evaluation(True)) == FineTuneTask.COMBINE_EXAMPLES == "combine_examples"
    assert budget_branch(evaluation(False)) == FineTuneTask.OVER_BUDGET == "over_budget"


@pytest.mark.parametrize(
    ("decision", "champ", "task_id"),
    [
        ("no_champion", None, "promote_challenger"),
        ("challenger_wins", FIRST, "promote_challenger"),
        ("challenger_loses", FIRST, "keep_champion"),
        ("already_champion", SECOND, "keep_champion"),
    ],
)
def test_champion_branch(decision: str, champ: str | None, task_id: str) -> None:
    assert champion_branch(scored(decision, champ=champ).model_dump(mode="json")) == task_id
    assert task_id in (FineTuneTask.PROMOTE_CHALLENGER, FineTuneTask.KEEP_CHAMPION)
