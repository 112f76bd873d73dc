"""Go-built tools: two processes asking for the same uncached tool build it once."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from genai_pipeline.local.go_tools import go_install

# A stand-in `go` that takes a while to "build" (writes the binary to $GOBIN) and counts its calls.
FAKE_GO = """#!/bin/bash
echo call >> "$CALLS"
sleep 1
name=$(basename "${@: -1}" | cut -d@ -f1)
printf '#!/bin/sh\\necho built\\n' > "$GOBIN/$name"
chmod +x "$GOBIN/$name"
"""


def _install(cache: str) -> str:
    return str(go_install(Path(cache), "example.com/cmd/tool", "v1.0.0"))


def test_concurrent_installs_run_go_once_and_all_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    go = bin_dir / "go"
    go.write_text(FAKE_GO)
    go.chmod(go.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CALLS", str(calls))

    with ProcessPoolExecutor(3) as pool:
        paths = list(pool.map(_install, [str(tmp_path / "cache")] * 3))

    assert len(set(paths)) == 1 and Path(paths[0]).read_text().endswith("echo built\n")
    assert calls.read_text().count("call") == 1
