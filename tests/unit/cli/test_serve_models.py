"""`pipeline serve-models` starts torch with OpenMP threads that sleep at barriers, unless the user chose."""

from __future__ import annotations

import argparse
import os
from typing import Any

import pytest

from genai_pipeline.cli import commands


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_server_s_openmp_threads_wait_passively_unless_set(
    monkeypatch: pytest.MonkeyPatch, given: str | None, expected: str
) -> None:
    import uvicorn

    from genai_pipeline.model_server import app as server_app

    seen: dict[str, Any] = {}

    class Registry:
        def prepare_in_background(self) -> None:
            seen["policy"] = os.environ.get("OMP_WAIT_POLICY")

    class App:
        state = argparse.Namespace(registry=Registry())

    monkeypatch.setenv("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "1"))  # restored after, as set or not
    if given is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", given)
    monkeypatch.setattr(server_app, "create_app", lambda settings: App())
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.setdefault("served", app))
    assert commands.cmd_serve_models(argparse.Namespace(host=None, port=None)) == 0
    assert seen["policy"] == expected and isinstance(seen["served"], App)
