"""images/tag.sh: the tag names the content, so a rebuilt image never hides behind an old name on a node."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def tag(tree: Path) -> str:
    return subprocess.run(["bash", str(tree / "images" / "tag.sh")], capture_output=True, text=True, check=True).stdout


def make_tree(root: Path) -> Path:
    (root / "images" / "embed").mkdir(parents=True)
    shutil.copy(REPO / "images" / "tag.sh", root / "images" / "tag.sh")
    (root / "images" / "embed" / "Dockerfile").write_text("FROM x\n")
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "step.py").write_text("VALUE = 1\n")
    (root / "dags").mkdir()
    (root / "dags" / "ingest.py").write_text("# dag\n")
    (root / "uv.lock").write_text("lock v1\n")
    (root / "pyproject.toml").write_text("[project]\n")
    (root / "README.md").write_text("docs\n")
    return root


def test_the_tag_follows_every_input_of_an_image_and_nothing_else(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "a")
    first = tag(tree)
    assert len(first.strip()) == 12 and first == tag(make_tree(tmp_path / "b"))  # same content, same tag anywhere

    (tree / "README.md").write_text("other docs\n")
    (tree / "src" / "pkg" / "__pycache__").mkdir()
    (tree / "src" / "pkg" / "__pycache__" / "step.cpython-311.pyc").write_bytes(b"\0")
    assert tag(tree) == first  # docs and byte code are not image inputs

    for path, text in [
        ("src/pkg/step.py", "VALUE = 2\n"),
        ("uv.lock", "lock v2\n"),
        ("dags/ingest.py", "# v2\n"),
        ("images/embed/Dockerfile", "FROM y\n"),
    ]:
        (tree / path).write_text(text)
        changed = tag(tree)
        assert changed != first, path
        first = changed
