"""Validate rendered Kubernetes objects offline against the OpenAPI schema of the Kubernetes the pipeline targets.

The schema is the API server's own ``api/openapi-spec/swagger.json`` from the ``k8s.io/kubernetes`` module (the
source ``make cluster-up`` builds the API server from), fetched once through the Go module proxy and cached by
Go; nothing is downloaded from the internet at test time. Validation is strict, like ``kubeconform -strict``:
a field the API does not define is an error, not something the server silently drops.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator

# The Kubernetes release the cluster scripts build (scripts/cluster/build-k8s.sh K8S_VERSION).
KUBERNETES_VERSION = "v1.34.4"
# Formats the spec types as strings that the API also accepts as numbers.
NUMERIC_STRINGS = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"anyOf": [{"type": "string"}, {"type": "number"}]},
}


class SchemaUnavailable(RuntimeError):
    """The Kubernetes module could not be fetched (no Go, or no module proxy)."""


def openapi_spec_path(version: str = KUBERNETES_VERSION) -> Path:
    """``swagger.json`` of ``k8s.io/kubernetes@version`` (``go mod download``: cached after the first call)."""
    go = shutil.which("go")
    if go is None:
        raise SchemaUnavailable("`go` is not on PATH: it fetches the Kubernetes OpenAPI schema once")
    result = subprocess.run(
        [go, "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
        capture_output=True,
        text=True,
        cwd=Path.home(),
    )
    if result.returncode != 0:
        raise SchemaUnavailable(f"go mod download k8s.io/kubernetes@{version} failed:\n{result.stderr[-1500:]}")
    return Path(json.loads(result.stdout)["Dir"]) / "api" / "openapi-spec" / "swagger.json"


def _strict(definitions: dict[str, Any]) -> dict[str, Any]:
    """Definitions closed against unknown fields, with the number-or-string types made explicit."""
    out = copy.deepcopy(definitions)
    for name, schema in out.items():
        if name in NUMERIC_STRINGS:
            out[name] = NUMERIC_STRINGS[name]
        elif "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    return out


class KubernetesSchema:
    """Every kind of the spec, by ``(apiVersion, kind)``."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.definitions = _strict(spec["definitions"])
        self.kinds: dict[tuple[str, str], str] = {}
        for name, schema in spec["definitions"].items():
            for gvk in schema.get("x-kubernetes-group-version-kind", []):
                api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
                self.kinds[(api_version, gvk["kind"])] = name

    def errors(self, obj: dict[str, Any]) -> list[str]:
        """Why ``obj`` is not a valid object of its kind (empty when it is)."""
        key = (obj.get("apiVersion", ""), obj.get("kind", ""))
        name = self.kinds.get(key)
        if name is None:
            return [f"{key[0]} {key[1]} is not a kind of Kubernetes {KUBERNETES_VERSION}"]
        validator = Draft4Validator({"definitions": self.definitions, "$ref": f"#/definitions/{name}"})
        return [
            f"{'.'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
            for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
        ]


@cache
def kubernetes_schema(version: str = KUBERNETES_VERSION) -> KubernetesSchema:
    """The loaded schema of ``version`` (loaded once per process)."""
    return KubernetesSchema(json.loads(openapi_spec_path(version).read_text()))
