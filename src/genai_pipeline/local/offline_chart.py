"""The umbrella chart without its dependency list, for machines that cannot fetch the official charts.

``helm template`` and ``helm install`` refuse a chart whose Chart.yaml lists a dependency missing from
``charts/``, even one its condition turns off. Users run ``helm dependency build`` (network); CI and
``make e2e`` here cannot reach the chart repositories, so they render and install this copy with
``airflow.enabled=false`` and ``weaviate.enabled=false``: the same templates, values and schema, minus the
list (and its lock). Usage: ``python -m genai_pipeline.local.offline_chart DEST`` prints the copy's path.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[3] / "charts" / "genai-pipeline"


def offline_chart(dest: Path, chart: Path = CHART) -> Path:
    """Copy ``chart`` to ``dest``/<name> with no dependencies declared; returns the copy."""
    target = dest / chart.name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(chart, target, ignore=shutil.ignore_patterns("charts", "Chart.lock", "*.tgz"))
    meta = yaml.safe_load((target / "Chart.yaml").read_text())
    meta.pop("dependencies", None)
    (target / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return target


if __name__ == "__main__":
    print(offline_chart(Path(sys.argv[1])))
