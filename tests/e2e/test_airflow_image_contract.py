"""The built Airflow image meets the official Airflow chart's contract (tests/charts/official_airflow_chart.yaml).

Every command the chart runs in our image, run as the chart runs it: the args through the image's entrypoint, the
exec probes by path, uid 10001 with a read-only root, no capabilities and no privilege escalation, airflow.cfg
mounted read-only and the logs folder writable, the chart's env names, and a real PostgreSQL (the project's
postgres image; PostgreSQL is the chart's default metadata database). Each gets the exit status the chart expects.
Runs in `make e2e`, where images/build.sh has just built both images.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from tests.charts.official_airflow_contract import contract
from tests.e2e.cluster import TAG

pytestmark = pytest.mark.e2e

AIRFLOW = f"genai-pipeline/airflow:{TAG}"
POSTGRES = f"genai-pipeline/postgres:{TAG}"
# How the chart's values run every Airflow container (charts/genai-pipeline/values.yaml: uid, securityContexts).
HARDENED = [
    "--read-only",
    "--user",
    "10001:10001",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--tmpfs",
    "/tmp:rw,exec,size=512m",
]
AIRFLOW_CFG = """[core]
dags_folder = /opt/pipeline/dags
load_examples = False
executor = LocalExecutor
auth_manager = airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
simple_auth_manager_users = admin:admin
simple_auth_manager_passwords_file = /tmp/simple_auth_manager_passwords.json.generated
execution_api_server_url = http://api-server:8080/execution/
"""


def docker(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@dataclass
class Stack:
    """A PostgreSQL container and the Airflow containers started on one Docker network."""

    network: str
    env: list[str]
    config: Path
    containers: list[str] = field(default_factory=list)

    def airflow_args(self, name: str | None = None) -> list[str]:
        logs = "/opt/airflow/logs:rw,uid=10001,gid=10001"
        mounts = ["--tmpfs", logs, "-v", f"{self.config}:{contract()['mounts']['config']['path']}:ro"]
        named = ["--name", name, "--network-alias", name.rsplit("-", 1)[0]] if name else []
        return [*HARDENED, *mounts, "--network", self.network, *named, *self.env]

    def run(self, args: list[str], image: str = AIRFLOW, entrypoint: str | None = None) -> subprocess.CompletedProcess:
        """A one-off container, as a Job or an init container runs: its exit status is the answer."""
        override = ["--entrypoint", entrypoint] if entrypoint else []
        return docker("run", "--rm", *self.airflow_args(), *override, image, *args)

    def start(self, component: str) -> str:
        """A component's long-running container, from the chart's args for it."""
        name = f"{component}-{uuid.uuid4().hex[:6]}"
        args = contract()["components"][component]["args"]
        result = docker("run", "-d", *self.airflow_args(name), AIRFLOW, *args)
        assert result.returncode == 0, result.stderr
        self.containers.append(name)
        return name


def answers(probe: dict, container: str) -> subprocess.CompletedProcess[str]:
    """Run one probe in a running container, as the kubelet does (an httpGet from inside, for want of its IP)."""
    if "exec" in probe:
        return docker("exec", container, *probe["exec"], timeout=120)
    get = probe["httpGet"]
    url = f"{get['scheme'].lower()}://127.0.0.1:{get['port']}{get['path']}"
    code = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=5).read()"
    return docker("exec", container, "python", "-c", code, timeout=120)


def eventually(probe: dict, container: str, within: float) -> subprocess.CompletedProcess[str]:
    """Probe until it succeeds or `within` seconds pass (a startup probe's budget); the last answer."""
    deadline = time.monotonic() + within
    while True:
        result = answers(probe, container)
        if result.returncode == 0 or time.monotonic() > deadline:
            return result
        time.sleep(3)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    assert TAG, "E2E_TAG is set by scripts/e2e.sh"
    for image in (AIRFLOW, POSTGRES):
        assert docker("image", "inspect", image).returncode == 0, f"{image} is not built"
    suffix = uuid.uuid4().hex[:6]
    network, database = f"airflow-contract-{suffix}", f"postgresql-{suffix}"
    assert docker("network", "create", network).returncode == 0
    config = tmp_path_factory.mktemp("airflow") / "airflow.cfg"
    config.write_text(AIRFLOW_CFG)
    config.chmod(0o644)
    password = uuid.uuid4().hex
    connection = f"postgresql://postgres:{password}@postgresql:5432/airflow?sslmode=disable"
    values = {
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": connection,
        "AIRFLOW_CONN_AIRFLOW_DB": connection,
        "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex,
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
        "AIRFLOW_HOME": contract()["env"]["AIRFLOW_HOME"]["value"],
    }
    assert set(values) == set(contract()["env"]), "every env name the chart sets, and no other"
    env = [arg for name, value in values.items() for arg in ("-e", f"{name}={value}")]
    stack = Stack(network, env, config)
    try:
        started = docker(
            "run", "-d", "--name", database, "--network", network, "--network-alias", "postgresql", *HARDENED,
            "--tmpfs", "/var/lib/postgresql/data:rw,uid=10001,gid=10001",
            "-e", f"POSTGRES_PASSWORD={password}", "-e", "POSTGRES_DB=airflow", POSTGRES,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        stack.containers.append(database)
        yield stack
    finally:
        for name in reversed(stack.containers):  # the components before their database
            if os.environ.get("E2E_LOGS"):
                logs = docker("logs", name)
                (Path(os.environ["E2E_LOGS"]) / f"contract-{name}.log").write_text(logs.stdout + logs.stderr)
            docker("rm", "-f", name)
        docker("network", "rm", network)


@pytest.fixture(scope="module")
def migrated(stack: Stack) -> Stack:
    """The migration Job's args, as the chart runs them: the entrypoint first waits for the database."""
    job = contract()["jobs"]["migrate-database"]
    result = stack.run(job["args"])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return stack


def test_the_init_containers_migration_check_passes_after_the_migration(migrated: Stack) -> None:
    result = migrated.run(contract()["wait_for_migrations"]["args"])
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture(scope="module")
def running(migrated: Stack) -> dict[str, str]:
    return {component: migrated.start(component) for component in contract()["components"]}


@pytest.mark.parametrize(
    ("component", "kind"),
    [(c, k) for c, fact in contract()["components"].items() for k in fact["probes"]],
)
def test_each_probe_succeeds_on_the_running_component(running: dict[str, str], component: str, kind: str) -> None:
    fact = contract()["components"][component]["probes"][kind]
    probe = {("exec" if "exec" in fact else "httpGet"): fact.get("exec", fact.get("httpGet"))}
    # The startup budget the chart gives (failureThreshold x periodSeconds), and more: the other components start
    # on the same two cores.
    budget = 3 * fact["timing"]["failureThreshold"] * fact["timing"]["periodSeconds"]
    result = eventually(probe, running[component], within=max(budget, 180))
    assert result.returncode == 0, (component, kind, result.stdout[-1500:], result.stderr[-1500:])


@pytest.mark.parametrize(
    "component", [c for c, fact in contract()["components"].items() if "exec" in fact["probes"]["livenessProbe"]]
)
def test_each_exec_probe_fails_where_its_component_is_not_running(migrated: Stack, component: str) -> None:
    """A container of the same image with no such job on its host: the liveness probe must fail it."""
    [shell, flag, script] = contract()["components"][component]["probes"]["livenessProbe"]["exec"]
    result = migrated.run([flag, script], entrypoint=shell)
    assert result.returncode != 0, f"{component}'s probe passed with no {component} running"
    assert "No alive jobs found" in result.stderr, result.stderr[-1500:]


def test_the_worker_pod_templates_python_form_runs(migrated: Stack) -> None:
    """KubernetesExecutor workers get the provider's args, `python -m ...execute_workload`, through /entrypoint."""
    args = contract()["worker_pod_template"]["args_from_provider"]
    result = migrated.run([*args[:3], "--help"])
    assert result.returncode == 0 and "--json-string" in result.stdout, result.stderr[-1500:]


def test_without_the_entrypoint_the_probes_fail(migrated: Stack, tmp_path: Path) -> None:
    """The check above can fail: the same image without /entrypoint fails the chart's exec probe."""
    broken = f"genai-pipeline/airflow-contract-broken:{TAG}"
    (tmp_path / "Dockerfile").write_text(f"FROM {AIRFLOW}\nUSER root\nRUN rm /entrypoint\nUSER 10001:10001\n")
    built = docker("build", "-q", "-t", broken, str(tmp_path), timeout=600)
    assert built.returncode == 0, built.stderr
    try:
        [shell, flag, script] = contract()["components"]["scheduler"]["probes"]["startupProbe"]["exec"]
        result = migrated.run([flag, script], image=broken, entrypoint=shell)
        assert result.returncode == 127 and "/entrypoint" in result.stderr, result
    finally:
        docker("image", "rm", "-f", broken)
