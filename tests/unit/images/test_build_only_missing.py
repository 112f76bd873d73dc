"""Build and import only what is missing: images/build.sh and the node import, with fake docker and ctr on PATH."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
TAG = "0123456789ab"

# Answers `image inspect` from files under $FAKE/images (one per reference: its id, then its build label) and
# logs every call; anything else fails, as a real build would without a daemon.
FAKE_DOCKER = r"""#!/usr/bin/env bash
echo "docker $*" >>"$FAKE/calls"
if [[ $1 == image && $2 == inspect ]]; then
    ref=${!#}; file="$FAKE/images/${ref//\//_}"
    [[ -f $file ]] || { echo "Error: No such image: $ref" >&2; exit 1; }
    if [[ $* == *genai-pipeline.build* ]]; then sed -n 2p "$file"; else sed -n 1p "$file"; fi
    exit 0
fi
[[ $1 == save ]] && { echo "tar of $2"; exit 0; }
[[ $1 == info ]] && exit 0
exit 1
"""

# A node's containerd: `images ls` (filtered by name==), `content get` of a manifest, `images import` (logged).
FAKE_CTR = r"""#!/usr/bin/env bash
echo "ctr $*" >>"$FAKE/calls"
while [[ $1 == -a || $1 == -n ]]; do shift 2; done
case "$1 $2" in
    "images ls")
        printf 'REF TYPE DIGEST SIZE PLATFORMS LABELS\n'
        name=${3#name==}
        for file in "$FAKE"/node/*; do
            [[ -f $file ]] || continue
            ref=$(sed -n 1p "$file")
            [[ -z ${3:-} || $ref == "$name" ]] && printf "%s manifest %s\n" "$ref" "$(sed -n 2p "$file")"
        done
        ;;
    "content get") cat "$FAKE/content/$3" ;;
    "images import") cat >/dev/null; echo imported >>"$FAKE/imports" ;;
    "images rm") ;;
    *) exit 1 ;;
esac
"""


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    for name, script in (
        ("docker", FAKE_DOCKER),
        ("ctr", FAKE_CTR),
        ("uv", '#!/bin/sh\necho "uv $*" >>"$FAKE/calls"\n'),
    ):
        (tmp_path / "bin" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "bin" / name).write_text(script)
        (tmp_path / "bin" / name).chmod(0o755)
    for folder in ("images", "node", "content"):
        (tmp_path / folder).mkdir()
    # The base is there: a build that goes on stops at its first `docker run` (never at debootstrap).
    docker_has(tmp_path, "genai-pipeline/base:bookworm", "sha256:base", "")
    return tmp_path


def env(fake: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{fake / 'bin'}:{os.environ['PATH']}", "FAKE": str(fake), "TAG": TAG, **extra}


def docker_has(fake: Path, ref: str, image_id: str, label: str) -> None:
    (fake / "images" / ref.replace("/", "_")).write_text(f"{image_id}\n{label}\n")


def build(fake: Path, *images: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "images" / "build.sh"), *images], env=env(fake, **extra), capture_output=True, text=True
    )


def calls(fake: Path) -> list[str]:
    path = fake / "calls"
    return path.read_text().splitlines() if path.exists() else []


LABELS = {
    "chunk": "extras=documents,tokens,s3 base=genai-pipeline/base:bookworm",
    "xcom-sidecar": "extras= base=genai-pipeline/base:bookworm",
}


def test_nothing_is_built_when_every_image_is_present_with_the_same_inputs(fake: Path) -> None:
    for name, label in LABELS.items():
        docker_has(fake, f"genai-pipeline/{name}:{TAG}", "sha256:x", label)
    result = build(fake, *LABELS)
    assert result.returncode == 0, result.stderr
    assert "nothing missing" in result.stderr
    assert all(call.startswith("docker image inspect") for call in calls(fake)), calls(fake)


@pytest.mark.parametrize(
    ("present", "extra"),
    [
        ({}, {}),  # no such tag
        ({"chunk": "extras=documents,tokens,s3 base=genai-pipeline/base:bookworm"}, {"S3": "0"}),  # other extras
        ({"chunk": "extras=documents,tokens,s3 base=genai-pipeline/base:bookworm"}, {"BASE_IMAGE": "python:3.12-slim"}),
        ({"chunk": "extras=documents,tokens,s3 base=genai-pipeline/base:bookworm"}, {"FORCE": "1"}),
    ],
)
def test_an_image_missing_or_built_from_other_inputs_is_built(
    fake: Path, present: dict[str, str], extra: dict[str, str]
) -> None:
    for name, label in present.items():
        docker_has(fake, f"genai-pipeline/{name}:{TAG}", "sha256:x", label)
    result = build(fake, "chunk", **extra)
    assert "nothing missing" not in result.stderr
    assert "present" not in result.stderr
    # The build went on past the check (the fake daemon then refuses to run anything).
    assert any(not call.startswith("docker image inspect") for call in calls(fake)), result.stderr


def test_an_unknown_image_stops_the_build(fake: Path) -> None:
    result = build(fake, "chunk", "nope")
    assert result.returncode == 2 and "unknown image nope" in result.stderr


def node_import(fake: Path, *refs: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "cluster" / "cluster.sh"), "import", *refs],
        env=env(fake, CLUSTER_DIR=str(fake / "cluster")),
        capture_output=True,
        text=True,
    )


def node_has(fake: Path, ref: str, manifest: str, config: str) -> None:
    (fake / "node" / ref.replace("/", "_")).write_text(f"docker.io/{ref}\n{manifest}\n")
    (fake / "content" / manifest).write_text(f'{{"schemaVersion": 2, "config": {{"digest": "{config}"}}}}')


def imports(fake: Path) -> int:
    path = fake / "imports"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_the_node_import_skips_an_image_the_node_has_whoever_imported_it(fake: Path) -> None:
    """No state outside the node: a fresh checkout (empty CLUSTER_DIR) over a kept node imports nothing."""
    ref = f"genai-pipeline/chunk:{TAG}"
    docker_has(fake, ref, "sha256:config1", LABELS["chunk"])
    node_has(fake, ref, "sha256:manifest1", "sha256:config1")
    result = node_import(fake, ref)
    assert result.returncode == 0, result.stderr
    assert imports(fake) == 0 and "importing" not in result.stderr


def test_the_node_import_loads_an_image_that_is_missing_or_another_build(fake: Path) -> None:
    missing, rebuilt = f"genai-pipeline/chunk:{TAG}", f"genai-pipeline/embed:{TAG}"
    docker_has(fake, missing, "sha256:config1", LABELS["chunk"])
    docker_has(fake, rebuilt, "sha256:config-new", "")
    node_has(fake, rebuilt, "sha256:manifest2", "sha256:config-old")  # same tag, built again (FORCE=1)
    result = node_import(fake, missing, rebuilt)
    assert result.returncode == 0, result.stderr
    assert imports(fake) == 2
    assert f"importing {missing}" in result.stderr and f"importing {rebuilt}" in result.stderr


def test_the_node_import_follows_an_index_to_its_image(fake: Path) -> None:
    """A newer Docker saves an OCI index: the node lists the index digest, whose first manifest is the image."""
    ref = f"genai-pipeline/chunk:{TAG}"
    docker_has(fake, ref, "sha256:config1", LABELS["chunk"])
    (fake / "node" / "chunk").write_text(f"docker.io/{ref}\nsha256:index1\n")
    (fake / "content" / "sha256:index1").write_text('{"manifests": [{"digest": "sha256:manifest1"}]}')
    (fake / "content" / "sha256:manifest1").write_text('{"config": {"digest": "sha256:config1"}}')
    result = node_import(fake, ref)
    assert result.returncode == 0, result.stderr
    assert imports(fake) == 0
