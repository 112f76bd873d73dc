"""Background processes of the embedded default (Weaviate, Airflow components, the model server).

Each runs in its own session with a pidfile and a log under ``<home>/run`` and ``<home>/logs``, so
``pipeline down`` can stop what ``pipeline up`` started, even from another shell. Stopping ends the
service's process group and every process it spawned, including those (Airflow task processes) that
left the group for a session of their own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import psutil


class ServiceError(RuntimeError):
    """A background service exited or never became ready; the message points at its log."""


# How long stopping waits after SIGTERM before SIGKILL: Ctrl-C must leave nothing running within seconds.
STOP_GRACE_SECONDS = 8.0


class Services:
    """Start, find and stop named background processes under one home folder."""

    def __init__(self, home: Path) -> None:
        self.run_dir = home / "run"
        self.log_dir = home / "logs"

    def pid(self, name: str) -> int | None:
        """PID of a running service, or None (stale pidfiles are removed)."""
        pidfile = self.run_dir / f"{name}.pid"
        if not pidfile.exists():
            return None
        pid = int(pidfile.read_text())
        try:
            running = _running(psutil.Process(pid))
        except psutil.NoSuchProcess:
            running = False
        if not running:
            pidfile.unlink(missing_ok=True)
            return None
        return pid

    def log(self, name: str) -> Path:
        """The service's log file."""
        return self.log_dir / f"{name}.log"

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        ready: Callable[[], bool],
        timeout: float = 120.0,
    ) -> int:
        """Start a service unless it runs already, then wait until ``ready()`` is true."""
        pid = self.pid(name)
        if pid is None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with open(self.log(name), "ab") as log:
                process = subprocess.Popen(
                    list(argv), env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            pid = process.pid
            (self.run_dir / f"{name}.pid").write_text(str(pid))
        else:
            process = None
        deadline = time.monotonic() + timeout
        while not ready():
            if process is not None and process.poll() is not None:
                raise ServiceError(f"{name} exited with code {process.returncode}; see {self.log(name)}")
            if time.monotonic() > deadline:
                raise ServiceError(f"{name} not ready after {timeout:.0f}s; see {self.log(name)}")
            time.sleep(0.5)
        return pid

    def stop(self, name: str, timeout: float = STOP_GRACE_SECONDS) -> bool:
        """SIGTERM the service and all it spawned, SIGKILL what is left after ``timeout``; True if it was running."""
        return bool(self.stop_all([name], timeout))

    def stop_all(self, names: Sequence[str], timeout: float = STOP_GRACE_SECONDS) -> list[str]:
        """Stop several services together: one SIGTERM round, one shared grace, then SIGKILL; the ones that ran.

        One after the other, each with its own grace, Ctrl-C on a whole stack took up to a minute.
        """
        leaders: dict[str, psutil.Process] = {}
        for name in names:
            pidfile = self.run_dir / f"{name}.pid"
            try:
                leaders[name] = psutil.Process(int(pidfile.read_text()))
            except (FileNotFoundError, psutil.NoSuchProcess):
                pidfile.unlink(missing_ok=True)
        # A leader that exited unreaped (a zombie) was not running, but it still holds its pid, so
        # signalling its process group is safe and stops what it left behind.
        running = [name for name, leader in leaders.items() if _running(leader)]
        # Snapshot the trees before signalling: once a leader exits, its children are re-parented to
        # init and cannot be found through it. The group signal alone misses descendants that called
        # setsid(), as Airflow's LocalExecutor task processes can, and those would run on as orphans.
        groups = [leader.pid for leader in leaders.values()]
        procs = [proc for leader in leaders.values() for proc in _tree(leader)]
        _signal(groups, procs, signal.SIGTERM)
        alive = _wait(procs, timeout)
        # Survivors may have spawned since the snapshot; the groups are signalled again for members the
        # snapshot missed (already re-parented), which is a no-op once they are empty.
        alive += [child for proc in alive for child in _tree(proc)[1:] if child not in alive]
        _signal(groups, alive, signal.SIGKILL)
        _wait(alive, 5.0)
        for name in leaders:
            (self.run_dir / f"{name}.pid").unlink(missing_ok=True)
        return running


def answers(url: str) -> bool:
    """Whether an HTTP endpoint answers 200: the readiness probe every local service uses."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    """The process and all its descendants (empty if it is gone)."""
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _signal(groups: Sequence[int], procs: Sequence[psutil.Process], sig: signal.Signals) -> None:
    """Send ``sig`` to each process group and to each process, tolerating ones that are gone."""
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)
    for proc in procs:
        # psutil refuses (NoSuchProcess) if the pid now belongs to another process.
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc.send_signal(sig)


def _wait(procs: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` for the processes to exit; return those still running."""
    deadline = time.monotonic() + timeout
    alive = [proc for proc in procs if _running(proc)]
    while alive and time.monotonic() < deadline:
        # wait_procs reaps our own children; it would wait on zombies of others, hence short rounds.
        _, alive = psutil.wait_procs(alive, timeout=min(0.2, max(0.0, deadline - time.monotonic())))
        alive = [proc for proc in alive if _running(proc)]
    return alive


def _running(proc: psutil.Process) -> bool:
    """Whether the process still runs; a zombie (exited, not reaped) counts as gone."""
    try:
        if proc.status() != psutil.STATUS_ZOMBIE:
            return True
    except psutil.NoSuchProcess:  # includes ZombieProcess
        return False
    except psutil.AccessDenied:
        return True
    # Reap it if it is our child (a service started by this process); else its parent will.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(proc.pid, os.WNOHANG)
    return False
