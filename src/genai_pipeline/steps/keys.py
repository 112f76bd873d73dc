"""Store key parts shared by the store layouts: a run id or a model id made safe as a folder or file name.

Kept apart from the store itself so the model server can name a model's folder without loading fsspec.
"""

from __future__ import annotations

import re


def safe_name(value: str) -> str:
    """A store-safe key part for a run id or a model id (``ft:base:suffix:id`` has colons)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", value)
