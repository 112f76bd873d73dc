"""images/images.tsv is the one image list: the scripts read it, and what else names images must agree with it."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from genai_pipeline.steps.registry import STEPS

REPO = Path(__file__).resolve().parents[3]
LIST = REPO / "images" / "list.sh"


def rows() -> dict[str, dict[str, str]]:
    """The data file as the tests read it, independently of images/list.sh."""
    found = {}
    for line in (REPO / "images" / "images.tsv").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, kind, extras, model, used = line.split()
            found[name] = {"kind": kind, "extras": extras, "model": model, "used": used}
    return found


def list_sh(*args: str) -> list[str]:
    return subprocess.run(["bash", str(LIST), *args], capture_output=True, text=True, check=True).stdout.split()


def test_every_step_runs_in_a_step_image_and_every_step_image_runs_a_step() -> None:
    step_images = {name for name, row in rows().items() if row["kind"] == "step"}
    assert {spec.image for spec in STEPS.values()} == step_images


def test_every_image_has_its_dockerfile_and_only_extras_pyproject_defines() -> None:
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    assert "s3" in extras  # images/build.sh adds it to every Python image unless S3=0
    for name, row in rows().items():
        assert (REPO / "images" / name / "Dockerfile").is_file(), name
        assert row["kind"] in {"step", "server", "cluster"}, name
        assert row["model"] in {"-", "tokenizer", "onnx"}, name
        assert row["extras"] == "-" or set(row["extras"].split(",")) <= extras, name
        assert row["used"] == "-" or set(row["used"].split(",")) <= {"e2e", "kind", "node"}, name


def test_list_sh_reads_the_same_rows() -> None:
    table = rows()
    assert list_sh("names") == list(table)
    for used in ("e2e", "kind", "node"):
        assert list_sh("names", used) == [n for n, r in table.items() if used in r["used"].split(",")]
    for name, row in table.items():
        assert list_sh("field", name, "extras") == ([] if row["extras"] == "-" else row["extras"].split(","))
        assert list_sh("field", name, "model") == ([] if row["model"] == "-" else [row["model"]])


@pytest.mark.parametrize("args", [("field", "nope", "extras"), ("field", "chunk", "colour"), ("what",)])
def test_list_sh_refuses_unknown_images_and_columns(args: tuple[str, ...]) -> None:
    assert subprocess.run(["bash", str(LIST), *args], capture_output=True).returncode == 2


def test_the_chart_accepts_a_tag_for_exactly_the_listed_images() -> None:
    schema = json.loads((REPO / "charts" / "genai-pipeline" / "values.schema.json").read_text())
    tags = schema["properties"]["images"]["properties"]["tags"]
    assert set(tags["propertyNames"]["enum"]) == set(rows())
    values = (REPO / "charts" / "genai-pipeline" / "values.yaml").read_text()
    block = values[values.index("# -- Per-image tags") : values.index("  tags:")]
    comment = " ".join(line.strip().removeprefix("#").strip() for line in block.splitlines())
    listed = re.search(r"Step images: ([^(]+) \(", comment)
    assert listed, comment
    assert set(listed.group(1).split(", ")) == {name for name, row in rows().items() if row["kind"] == "step"}


def test_skaffold_builds_the_listed_images() -> None:
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    table = rows()
    default = [a["image"].removeprefix("genai-pipeline/") for a in config["build"]["artifacts"]]
    assert default == list_sh("names", "kind")
    local = next(p for p in config["profiles"] if p["name"] == "local-node")
    added = [
        op["value"]["image"].removeprefix("genai-pipeline/")
        for op in local["patches"]
        if op["path"] == "/build/artifacts/-"
    ]
    assert added == [n for n, r in table.items() if "node" in r["used"].split(",")]
    for artifact in config["build"]["artifacts"]:
        paths = artifact["custom"]["dependencies"]["paths"]
        name = artifact["image"].removeprefix("genai-pipeline/")
        assert f"images/{name}/**" in paths
        if table[name]["extras"] != "-":
            assert {"images/images.tsv", "uv.lock", "pyproject.toml"} <= set(paths), name
    releases = [config["deploy"]["helm"]["releases"][0]] + [
        op["value"] for op in local["patches"] if op["path"] == "/deploy/helm/releases/0"
    ]
    for release in releases:
        tagged = {k.removeprefix("images.tags.") for k in release["setValueTemplates"] if k.startswith("images.tags.")}
        assert tagged == set(default) - {"airflow"}
