"""The official Airflow chart's interface, read from official_airflow_chart.yaml (facts from its source, no code).

The chart tests check our values, NOTES.txt, skaffold and the e2e manifests against it; the e2e image test runs
its commands in the built image.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

FILE = Path(__file__).with_name("official_airflow_chart.yaml")
# ServiceAccounts that run tasks, so launch step pods: LocalExecutor's scheduler, KubernetesExecutor's workers
# (either worker-account setting) and the triggerer (deferred pod tasks).
LAUNCHERS = ("scheduler", "worker", "worker-kubernetes", "triggerer")


@cache
def contract() -> dict[str, Any]:
    return yaml.safe_load(FILE.read_text())


def fill(template: str, release: str, namespace: str = "genai-pipeline") -> str:
    """A name template of the table for one release (ServiceAccounts drop "-airflow" when the release has it)."""
    prefix = release if "airflow" in release else f"{release}-airflow"
    return template.format(release=release, sa=prefix, namespace=namespace)


def service_accounts(release: str) -> dict[str, str]:
    """Every ServiceAccount the chart can make for a release, by component."""
    table = contract()
    accounts = {name: fill(c["service_account"], release) for name, c in table["components"].items()}
    accounts |= {f"job/{name}": fill(j["service_account"], release) for name, j in table["jobs"].items()}
    worker = table["worker_pod_template"]
    accounts["worker"] = fill(worker["service_account"], release)
    accounts["worker-kubernetes"] = fill(worker["service_account_dedicated"], release)
    return accounts


def launcher_accounts(release: str) -> set[str]:
    accounts = service_accounts(release)
    return {accounts[name] for name in LAUNCHERS}


def api_server(release: str) -> dict[str, str]:
    """The API server's Deployment and Service names for a release (useStandardNaming false)."""
    component = contract()["components"]["api-server"]
    return {
        "deployment": fill(component["workload"]["name"], release),
        "service": fill(component["service"]["name"], release),
    }


def probe(component: str, kind: str) -> dict[str, Any]:
    """One probe as a Kubernetes container field, as the chart renders it."""
    fact = contract()["components"][component]["probes"][kind]
    handler = {"exec": {"command": fact["exec"]}} if "exec" in fact else {"httpGet": fact["httpGet"]}
    return handler | fact["timing"]


def secret_env(release: str) -> dict[str, tuple[str, str]]:
    """Env names the chart fills from Secrets, with (Secret, key) for a release."""
    return {
        name: (fill(source["secret"], release), source["key"])
        for name, source in contract()["env"].items()
        if "secret" in source
    }
