"""Champion/challenger on plain values and a tmp store: metrics, the decision, promotion and the DAG branches."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import isolated_settings
from genai_pipeline.config import Settings
from genai_pipeline.orchestration.fine_tune_tasks import (
    COMBINE,
    KEEP,
    OVER_BUDGET,
    PROMOTE,
    budget_branch,
    champion_branch,
)
from genai_pipeline.steps import champion
from genai_pipeline.steps import finetune_store as layout
from genai_pipeline.steps.champion import (
    HeldoutItem,
    covers,
    decide,
    history,
    keep_champion,
    load_heldout,
    promote,
    score_answers,
    token_f1,
)
from genai_pipeline.steps.contracts import Challenger, Evaluation, ModelScores, Scored
from genai_pipeline.store import Store

FIRST, SECOND = "ft:gpt-4o-mini:pipeline:first", "ft:gpt-4o-mini:pipeline:second"


def make_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    return isolated_settings(monkeypatch, tmp_path)


def scores(model: str, coverage: float, f1: float) -> ModelScores:
    return ModelScores(model=model, fact_coverage=coverage, answer_token_f1=f1, items=4)


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


def item(**fields) -> str:
    return json.dumps({"group": "short", "title": "T", "facts": ["8088"], "answer": "Port 8088."} | fields)


def test_load_heldout_reads_items_and_skips_blank_lines() -> None:
    data = f"{item()}\n\n{item(group='long', title='U', facts=['a', 'B'], answer='x')}\n".encode()
    assert load_heldout(data) == [
        HeldoutItem("short", "T", ("8088",), "Port 8088."),
        HeldoutItem("long", "U", ("a", "B"), "x"),
    ]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "held-out line 3: needs JSON with group, title, facts, answer"),
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


def test_score_answers_averages_over_the_items() -> None:
    items = [
        HeldoutItem("short", "A", ("8088",), "port 8088"),
        HeldoutItem("short", "B", ("zeta", "omega"), "zeta omega psi"),
    ]
    # The second answer misses "omega"; its F1 against "zeta omega psi": P 1/2, R 1/3 -> 0.4.
    result = score_answers("m", items, ["Port 8088", "zeta only"])
    assert result == ModelScores(model="m", fact_coverage=0.5, answer_token_f1=round((1.0 + 0.4) / 2, 4), items=2)
    with pytest.raises(ValueError):
        score_answers("m", items, ["one answer for two items"])


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

    first = promote(settings, scored("no_champion", FIRST, "ftjob-1", champ=None))
    assert (first.decision, first.champion, first.record_key) == ("no_champion", FIRST, layout.CHAMPION)
    current = store.read_json(layout.CHAMPION)
    assert current["model"] == FIRST and current["job_id"] == "ftjob-1"
    assert current["dataset"] == first_lineage["dataset"]
    assert current["lineage"] == layout.lineage(FIRST)
    assert current["previous_champion"] is None and current["scores"]["champion"] is None
    assert current["promoted_at"] == "2023-11-14T22:13:20Z"
    assert history(store) == [current]

    clock.tick()
    second = promote(settings, scored("challenger_wins", SECOND, "ftjob-2", champ=FIRST))
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
    promote(settings, scored("no_champion", SECOND, "ftjob-2", champ=None))
    promote(settings, scored("challenger_wins", FIRST, "ftjob-1", champ=SECOND))
    assert [e["model"] for e in history(store)] == [SECOND, FIRST]


@pytest.mark.parametrize("decision", ["challenger_loses", "already_champion"])
def test_promote_refuses_a_decision_that_keeps_the_champion(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, decision: str
) -> None:
    settings = make_settings(monkeypatch, tmp_path)
    store = Store(settings.store)
    write_lineage(store, SECOND, "ftjob-2")
    with pytest.raises(ValueError, match=f"{decision}: the challenger is not promoted"):
        promote(settings, scored(decision))
    assert not store.exists(layout.CHAMPION)
    assert history(store) == []


def test_keep_champion_points_at_the_runs_decision_record(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = make_settings(monkeypatch, tmp_path)
    kept = keep_champion(settings, scored("challenger_loses"))
    assert (kept.decision, kept.champion) == ("challenger_loses", FIRST)
    assert kept.record_key == layout.decision("manual__2025-01-01T00_00_00_00_00")
    already = keep_champion(settings, scored("already_champion", FIRST, "ftjob-1", champ=FIRST))
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
        keep_champion(settings, scored(decision, champ=champ))


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
    assert budget_branch(evaluation(True)) == COMBINE == "combine_examples"
    assert budget_branch(evaluation(False)) == OVER_BUDGET == "over_budget"


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
    assert task_id in (PROMOTE, KEEP)
