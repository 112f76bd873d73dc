"""Names the steps, the DAGs and the CLI share: the champion/challenger decision and the fine-tuning branch tasks.

Each was a bare string in several places (a step, a contract's regex, a DAG, the CLI); a rename in one would
have left a branch that never matches.
"""

from __future__ import annotations

from enum import StrEnum


class ChampionDecision(StrEnum):
    """What comparing the challenger with the champion decided."""

    NO_CHAMPION = "no_champion"
    CHALLENGER_WINS = "challenger_wins"
    CHALLENGER_LOSES = "challenger_loses"
    ALREADY_CHAMPION = "already_champion"

    @property
    def promotes(self) -> bool:
        """Whether the challenger becomes the champion."""
        return self in (ChampionDecision.NO_CHAMPION, ChampionDecision.CHALLENGER_WINS)


class FineTuneTask(StrEnum):
    """The fine-tuning DAGs' branch targets: task ids, and step names where a step runs."""

    COMBINE_EXAMPLES = "combine_examples"
    OVER_BUDGET = "over_budget"
    PROMOTE_CHALLENGER = "promote_challenger"
    KEEP_CHAMPION = "keep_champion"
