"""Go-built tools (weaviate-server, helm, helm-docs) installed from the Go module proxy and cached per version.

No release downloads or container registries are needed: ``go install`` builds from source once per
machine (minutes), later calls find the cached binary.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

HELM_MODULE = "helm.sh/helm/v3/cmd/helm"
HELM_VERSION = "v3.22.0"


class GoToolUnavailable(RuntimeError):
    """The tool is not cached and could not be built; the message carries go's error."""


def tool_path(cache_dir: Path, module: str, version: str) -> Path:
    """Where ``module@version``'s binary is cached (it may not be built yet)."""
    binary = module.rsplit("/", 1)[-1]
    return cache_dir / f"{binary.removesuffix('-server')}-{version}" / binary


def go_install(cache_dir: Path, module: str, version: str, *, ldflags: str | None = None) -> Path:
    """Path of ``module@version``'s binary, building it with ``go install`` the first time."""
    target = tool_path(cache_dir, module, version)
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
        command = [go, "install", *(["-ldflags", ldflags] if ldflags else []), f"{module}@{version}"]
        env = {**os.environ, "GOBIN": str(target.parent), "CGO_ENABLED": "0"}
        result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0 or not target.is_file():
        raise GoToolUnavailable(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return target


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
