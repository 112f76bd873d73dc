"""Go-built tools: two processes asking for the same uncached tool build it once."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from genai_pipeline.local.go_tools import GoToolUnavailable, SourceEdit, go_install

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


# A stand-in `go` for an edited build: `mod download` names the module's folder, `build` (run in the edited
# copy) records the file it compiled and writes the binary to its -o path.
FAKE_GO_EDITED = """#!/bin/bash
case "$1" in
  mod) printf '{"Dir": "%s"}\\n' "$MODDIR" ;;
  build)
    while [[ $# -gt 0 ]]; do [[ $1 == -o ]] && out=$2; shift; done
    cp server/listen.go "$SEEN"
    printf '#!/bin/sh\\n' > "$out" && chmod +x "$out" ;;
esac
"""


def test_an_edited_build_compiles_the_edited_source_and_is_cached_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir, module = tmp_path / "bin", tmp_path / "modcache" / "example.com" / "m@v1.0.0"
    bin_dir.mkdir()
    (module / "server").mkdir(parents=True)
    (module / "server" / "listen.go").write_text('addr := fmt.Sprintf(":%d", port)\n')
    (module / "server" / "listen.go").chmod(0o444)  # the module cache is read-only
    go = bin_dir / "go"
    go.write_text(FAKE_GO_EDITED)
    go.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MODDIR", str(module))
    monkeypatch.setenv("SEEN", str(tmp_path / "seen.go"))
    edit = SourceEdit("example.com/m", "server/listen.go", 'fmt.Sprintf(":%d",', 'fmt.Sprintf("%s:%d", host,')

    built = go_install(tmp_path / "cache", "example.com/m/cmd/tool", "v1.0.0", edits=(edit,), label="-bind")

    assert built == tmp_path / "cache" / "tool-v1.0.0-bind" / "tool" and built.is_file()
    assert (tmp_path / "seen.go").read_text() == 'addr := fmt.Sprintf("%s:%d", host, port)\n'
    assert "%s" not in (module / "server" / "listen.go").read_text()  # upstream's copy is untouched
    assert not (built.parent / "src").exists()  # the scratch copy is gone
    stale = SourceEdit("example.com/m", "server/listen.go", "net.Listen(", "x")
    with pytest.raises(GoToolUnavailable, match=r"no longer has 'net\.Listen\(' exactly once"):
        go_install(tmp_path / "cache", "example.com/m/cmd/tool", "v1.0.0", edits=(stale,), label="-stale")
