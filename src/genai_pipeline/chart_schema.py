"""The chart's ``pipeline`` values schema, generated from the settings model (one config model, two readers).

``python -m genai_pipeline.chart_schema`` rewrites ``properties.pipeline`` of
``charts/genai-pipeline/values.schema.json`` (the rest of that file is the chart's own); ``--check`` fails when
the committed schema differs, which a test runs. Every settings section becomes a closed object whose fields
carry the model's types, enums, bounds and defaults, so ``helm`` rejects a mistyped key or value before
anything reaches a cluster. Left out: secrets (they come only from the Secret) and the fields the chart
renders itself from other values (images.*, global.existingSecret).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from genai_pipeline.config import Settings
from genai_pipeline.local.offline_chart import CHART

SCHEMA_FILE = CHART / "values.schema.json"
# Rendered by the chart from images.* and global.existingSecret: setting them twice would let the two disagree.
CHART_RENDERED = {
    "runtime": {"image_registry", "image_tag", "image_tags", "image_pull_policy", "xcom_sidecar_image", "secret_name"},
}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with every ``$ref`` inlined, titles dropped and every object with properties closed."""
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = _resolve(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        extra = {k: _resolve(v, defs) for k, v in node.items() if k != "$ref"}
        return {**target, **extra}
    out = {k: _resolve(v, defs) for k, v in node.items() if k != "title"}
    if "properties" in out:
        out["additionalProperties"] = False
    return out


def _secret(field: dict[str, Any]) -> bool:
    """A SecretStr field, optional ones too (``anyOf`` a write-only string and null): never a chart value."""
    return any(option.get("writeOnly") for option in [field, *field.get("anyOf", [])])


def pipeline_schema() -> dict[str, Any]:
    """The ``pipeline`` values: one closed object per settings section, secrets and chart-rendered fields out."""
    model = Settings.model_json_schema()
    defs = model.get("$defs", {})
    sections: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        if not hasattr(field.annotation, "model_fields"):
            continue  # home, cache_dir, store_uri: not a section (storeUri is a value of its own)
        section = _resolve(model["properties"][name], defs)
        skip = CHART_RENDERED.get(name, set())
        section["properties"] = {
            key: value for key, value in section["properties"].items() if key not in skip and not _secret(value)
        }
        section.pop("default", None)
        sections[name] = section
    return {
        "type": "object",
        "description": "PIPELINE_<SECTION>__<FIELD> settings, typed by the pipeline's settings model",
        "additionalProperties": False,
        "properties": sections,
    }


def render(schema: dict[str, Any]) -> str:
    """The schema file's text with ``properties.pipeline`` regenerated."""
    schema = {**schema, "properties": {**schema["properties"], "pipeline": pipeline_schema()}}
    return json.dumps(schema, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Rewrite the schema file, or with ``--check`` report whether it is current."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed schema is out of date")
    args = parser.parse_args(argv)
    current = SCHEMA_FILE.read_text()
    wanted = render(json.loads(current))
    if args.check:
        if current != wanted:
            print(f"{SCHEMA_FILE} is out of date: python -m genai_pipeline.chart_schema", file=sys.stderr)
            return 1
        return 0
    SCHEMA_FILE.write_text(wanted)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
