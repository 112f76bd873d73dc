"""Which fine-tuned models the server deletes, so checkpoints (540 MB each for SmolLM2) do not fill its volume.

The rule, applied when a job succeeds: past ``kept_fine_tuned_models``, delete the least recently used models,
where a model is used when it is trained and whenever it answers a chat completion. Never deleted: the model
just trained, and the champion the pipeline recorded in ``<store>/finetune/champion/current.json`` whenever
the server can read the store (the embedded default shares the home; in a cluster, the server's volume must
hold the store). Without the store the order itself keeps the champion: each champion/challenger run asks
the challenger and then the champion, and only the next fine-tune triggers a deletion, so the champion is one
of the two most recently used earlier models, and the keep count is at least 3 (the new model plus those two).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from genai_pipeline.config import Settings
from genai_pipeline.steps.finetune_store import champion_model
from genai_pipeline.store import Store

log = logging.getLogger(__name__)

# Touched whenever the model answers, in its folder (transformers and peft load a folder by known names only).
LAST_USED = ".last-used"


def mark_used(folder: Path) -> None:
    """Record that the model in ``folder`` was just used (unless it was deleted meanwhile)."""
    with contextlib.suppress(FileNotFoundError):
        (folder / LAST_USED).touch()


def last_used(folder: Path) -> float:
    """When the model was last used: its marker's time, else when it was saved."""
    marker = folder / LAST_USED
    return (marker if marker.exists() else folder).stat().st_mtime


def to_delete(models: dict[str, Path], keep: int, protected: set[str]) -> list[str]:
    """Names to delete so that at most ``keep`` of ``models`` remain (fewer only if ``protected`` needs more).

    The least recently used go first; ``protected`` names are never chosen.
    """
    candidates = sorted((name for name in models if name not in protected), key=lambda n: last_used(models[n]))
    return candidates[: max(len(models) - keep, 0)]


def store_champion(settings: Settings) -> str | None:
    """The champion model the pipeline's store names; None when there is none yet or the store cannot be read."""
    try:
        return champion_model(Store(settings.store))
    except Exception as error:  # an unreadable store leaves the keep order to protect the champion
        log.warning("cannot read the champion record in %s: %s", settings.store, error)
        return None
