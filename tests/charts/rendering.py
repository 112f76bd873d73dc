"""Rendering the umbrella chart with real helm, for the chart tests.

The official Airflow and Weaviate charts cannot be fetched here, so these tests render the chart's copy without
its dependency list (genai_pipeline.local.offline_chart) with both dependencies off; what the dependencies get
is checked on the values handed to them.
"""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from genai_pipeline.config import Settings
from genai_pipeline.local.go_tools import ensure_helm
from genai_pipeline.local.offline_chart import CHART

REPO = CHART.parents[1]
DEPS_OFF = ("airflow.enabled=false", "weaviate.enabled=false")
# The model server on, demanding the key its clients send (the chart refuses it without one).
MODEL_SERVER_ON = ("modelServer.enabled=true", "modelServer.apiKeySecretKey=PIPELINE_OPENAI__API_KEY")
Docs = dict[tuple[str, str], dict[str, Any]]


@cache
def helm() -> Path:
    return ensure_helm(Settings().cache_dir)


def render_list(
    chart_dir: Path, *sets: str, values: tuple[Path, ...] = (), release: str = "kb", namespace: str = "genai-pipeline"
) -> list[dict[str, Any]]:
    """Every object `helm template` renders (hooks and tests included), dependencies off."""
    args = [str(helm()), "template", release, str(chart_dir), "--namespace", namespace, "--kube-version", "1.34.0"]
    for path in values:
        args += ["-f", str(path)]
    for item in (*DEPS_OFF, *sets):
        args += ["--set", item]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def render(chart_dir: Path, *sets: str, values: tuple[Path, ...] = (), release: str = "kb") -> Docs:
    """The rendered objects by (kind, name)."""
    return {
        (d["kind"], d["metadata"]["name"]): d for d in render_list(chart_dir, *sets, values=values, release=release)
    }


def chart_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def merged_values(values: tuple[Path, ...] = (), sets: tuple[str, ...] = ()) -> dict[str, Any]:
    """The values helm hands the chart and its dependencies: values.yaml, then each -f file, then each --set."""

    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    result = chart_values()
    for path in values:
        result = merge(result, yaml.safe_load(path.read_text()) or {})
    for item in sets:
        dotted, raw = item.split("=", 1)
        *parents, leaf = dotted.split(".")
        node = result
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return result
