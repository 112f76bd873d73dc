"""``Services.stop`` ends every process a service started, with real processes (no mocks).

The "service" below is a python script shaped like an Airflow component running a LocalExecutor
task: the leader spawns a child in its own session, and that child spawns a grandchild that leaves
the session with ``os.setsid()``, as task processes can, so a signal to the leader's process group
never reaches it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from genai_pipeline.local.services import Services

SERVICE = r"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

out, role = Path(sys.argv[1]), sys.argv[2]


def announce(name):
    tmp = out / f"{name}.tmp"
    tmp.write_text(str(os.getpid()))
    tmp.rename(out / f"{name}.pid")  # atomic: the probe never reads half a pid


if role == "leader":
    subprocess.Popen([sys.executable, __file__, str(out), "child"])
elif role == "child":
    subprocess.Popen([sys.executable, __file__, str(out), "task"])
elif role == "task":
    os.setsid()  # a new session, as a task process can end up in
    if os.environ.get("IGNORE_SIGTERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
elif role == "crashing-leader":
    subprocess.Popen([sys.executable, __file__, str(out), "orphan"])
    while not (out / "crash").exists():
        time.sleep(0.05)
    sys.exit(1)  # leaves the orphan running in its process group
announce(role)
while True:
    time.sleep(0.1)
"""

ROLES = ("leader", "child", "task")


def _gone(proc: psutil.Process) -> bool:
    """Whether a process has exited; a zombie (exited, not reaped yet) counts as gone."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(procs: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    """Poll up to ``seconds``; return the processes still running."""
    deadline = time.monotonic() + seconds
    alive = [p for p in procs if not _gone(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if not _gone(p)]
    return alive


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator:
    """Start the script as service ``svc``; yield a starter returning (services, processes)."""
    started: list[psutil.Process] = []

    def start(env: dict[str, str] | None = None, name: str = "svc") -> tuple[Services, list[psutil.Process]]:
        script = tmp_path / "service.py"
        script.write_text(SERVICE)
        out = tmp_path / f"pids-{name}"
        out.mkdir()
        services = Services(tmp_path)
        services.start(
            name,
            [sys.executable, str(script), str(out), "leader"],
            {**os.environ, **(env or {})},
            ready=lambda: all((out / f"{role}.pid").exists() for role in ROLES),
            timeout=30,
        )
        procs = [psutil.Process(int((out / f"{role}.pid").read_text())) for role in ROLES]
        started.extend(procs)
        # The shape under test: the task left the leader's session and process group.
        leader, _, task = procs
        assert os.getsid(task.pid) == task.pid != os.getsid(leader.pid)
        assert os.getpgid(task.pid) != os.getpgid(leader.pid)
        return services, procs

    yield start
    for proc in started:  # never leave processes behind, whatever the code under test did
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def test_stop_ends_task_processes_outside_the_process_group(start_service) -> None:
    services, procs = start_service()

    assert services.stop("svc", timeout=10) is True

    alive = _wait_gone(procs, 5)
    assert not alive, f"still running after stop: {[(p.pid, p.cmdline()[-1]) for p in alive]}"
    assert services.pid("svc") is None
    assert not (services.run_dir / "svc.pid").exists()
    assert services.stop("svc") is False


def test_stop_kills_a_task_that_ignores_sigterm_after_the_timeout(start_service) -> None:
    services, procs = start_service({"IGNORE_SIGTERM": "1"})
    task = procs[-1]

    started = time.monotonic()
    assert services.stop("svc", timeout=1) is True
    elapsed = time.monotonic() - started

    alive = _wait_gone(procs, 5)
    assert not alive, f"still running after stop: {[(p.pid, p.cmdline()[-1]) for p in alive]}"
    assert elapsed >= 1, "the task ignores SIGTERM, so stop has to wait the timeout before SIGKILL"
    assert elapsed < 10
    assert _gone(task)


def test_a_stack_stops_within_one_grace_not_one_per_service(start_service) -> None:
    """Ctrl-C stops every service together: three that ignore SIGTERM cost one grace period, not three."""
    names = ["weaviate", "scheduler", "model-server"]
    started = [start_service({"IGNORE_SIGTERM": "1"}, name) for name in names]
    services = started[0][0]

    began = time.monotonic()
    assert services.stop_all([*names, "never-started"], timeout=3) == names
    elapsed = time.monotonic() - began

    procs = [proc for _, group in started for proc in group]
    assert not _wait_gone(procs, 5)
    assert 3 <= elapsed < 6, elapsed  # one after the other: 9 s at least
    assert all(services.pid(name) is None for name in names)


def test_a_zombie_service_counts_as_stopped(tmp_path: Path) -> None:
    services = Services(tmp_path)
    pid = services.start("svc", [sys.executable, "-c", "pass"], dict(os.environ), ready=lambda: True)
    # Nothing reaps it yet: it stays a zombie of this process once it exits.
    proc = psutil.Process(pid)
    deadline = time.monotonic() + 10
    while proc.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.status() == psutil.STATUS_ZOMBIE

    assert services.pid("svc") is None
    assert not (services.run_dir / "svc.pid").exists()
    assert services.stop("svc") is False


def test_stop_ends_what_a_zombie_leader_left_in_its_group(tmp_path: Path) -> None:
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    out = tmp_path / "pids"
    out.mkdir()
    services = Services(tmp_path)
    pid = services.start(
        "svc",
        [sys.executable, str(script), str(out), "crashing-leader"],
        dict(os.environ),
        ready=lambda: (out / "orphan.pid").exists(),
        timeout=30,
    )
    orphan = psutil.Process(int((out / "orphan.pid").read_text()))
    (out / "crash").touch()
    try:
        assert _wait_gone([psutil.Process(pid)], 10) == []  # the leader is gone, as a zombie or reaped
        assert os.getpgid(orphan.pid) == pid

        assert services.stop("svc", timeout=5) is False  # the service itself no longer ran

        assert _wait_gone([orphan], 5) == []
        assert not (services.run_dir / "svc.pid").exists()
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            orphan.kill()
