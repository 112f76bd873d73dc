"""Go-built tools (weaviate-server, helm, helm-docs) installed from the Go module proxy and cached per version.

No release downloads or container registries are needed: ``go install`` builds from source once per
machine (minutes), later calls find the cached binary.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

HELM_MODULE = "helm.sh/helm/v3/cmd/helm"
HELM_VERSION = "v3.22.0"


class GoToolUnavailable(RuntimeError):
    """The tool is not cached and could not be built; the message carries go's error."""


@dataclass(frozen=True)
class SourceEdit:
    """A build-time edit of an upstream module: in ``file``, its one occurrence of ``old`` becomes ``new``.

    For a behaviour upstream offers no setting for. Nothing upstream is copied into this project: the module is
    downloaded from the proxy, edited in a scratch folder, built and the folder removed. An edit that no longer
    matches exactly once fails the build rather than build something else.
    """

    module: str  # the module root (go.mod's path) the file belongs to
    file: str
    old: str
    new: str


def tool_path(cache_dir: Path, module: str, version: str) -> Path:
    """Where ``module@version``'s binary is cached (it may not be built yet)."""
    binary = module.rsplit("/", 1)[-1]
    return cache_dir / f"{binary.removesuffix('-server')}-{version}" / binary


def go_install(
    cache_dir: Path,
    module: str,
    version: str,
    *,
    ldflags: str | None = None,
    edits: tuple[SourceEdit, ...] = (),
    label: str = "",
) -> Path:
    """Path of ``module@version``'s binary, building it with ``go install`` the first time.

    With ``edits`` it is built from the module's source edited so (cached under ``version`` + ``label``, so
    an edited build and a stock one never stand in for each other).
    """
    target = tool_path(cache_dir, module, version + label)
    binary = target.name
    if target.is_file():
        return target
    go = shutil.which("go")
    if go is None:
        raise GoToolUnavailable(f"`go` is not on PATH: it is needed once to build {binary} ({module}@{version})")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Two processes starting at once (parallel test workers, `make demo` beside `make test`) build it once: the
    # second waits here, then finds the binary, never a half-written one.
    with (target.parent / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        flags = ["-ldflags", ldflags] if ldflags else []
        env = {**os.environ, "GOBIN": str(target.parent), "CGO_ENABLED": "0"}
        if edits:
            command, result = _build_edited(go, env, target, module, version, edits, flags)
        else:
            command = [go, "install", *flags, f"{module}@{version}"]
            result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0 or not target.is_file():
        raise GoToolUnavailable(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return target


def _build_edited(
    go: str,
    env: dict[str, str],
    target: Path,
    package: str,
    version: str,
    edits: tuple[SourceEdit, ...],
    flags: list[str],
) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    """``go build`` of ``package`` from its module's source with ``edits`` applied, in a scratch copy."""
    (root,) = {edit.module for edit in edits}
    download = [go, "mod", "download", "-json", f"{root}@{version}"]
    fetched = subprocess.run(download, env=env, cwd=target.parent, capture_output=True, text=True)
    if fetched.returncode != 0:
        return download, fetched
    source = target.parent / "src"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(json.loads(fetched.stdout)["Dir"], source)  # the module cache is read-only
    try:
        for path in source.rglob("*"):
            path.chmod(path.stat().st_mode | 0o200)
        for edit in edits:
            path = source / edit.file
            text = path.read_text()
            if text.count(edit.old) != 1:
                raise GoToolUnavailable(f"{root}@{version}: {edit.file} no longer has {edit.old!r} exactly once")
            path.write_text(text.replace(edit.old, edit.new))
        command = [go, "build", *flags, "-o", str(target), "./" + package.removeprefix(root + "/")]
        return command, subprocess.run(command, env=env, cwd=source, capture_output=True, text=True)
    finally:
        shutil.rmtree(source, ignore_errors=True)


def ensure_helm(cache_dir: Path) -> Path:
    """The pinned helm, with its version stamped in (chart ``kubeVersion`` checks rely on it)."""
    return go_install(
        cache_dir, HELM_MODULE, HELM_VERSION, ldflags=f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}"
    )


HELM_DOCS_MODULE = "github.com/norwoodj/helm-docs/cmd/helm-docs"
HELM_DOCS_VERSION = "v1.14.2"


def ensure_helm_docs(cache_dir: Path) -> Path:
    """The pinned helm-docs, which writes the chart's README from the ``# --`` comments of its values."""
    return go_install(cache_dir, HELM_DOCS_MODULE, HELM_DOCS_VERSION)


VERSITYGW_MODULE = "github.com/versity/versitygw/cmd/versitygw"
VERSITYGW_VERSION = "v1.8.0"


def ensure_versitygw(cache_dir: Path) -> Path:
    """The pinned versitygw, an S3 gateway over a local folder: the real S3 API the store is tested against."""
    return go_install(cache_dir, VERSITYGW_MODULE, VERSITYGW_VERSION)
