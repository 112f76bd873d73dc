"""Background processes of the embedded default (Weaviate, Airflow components, the model server).

Each runs in its own session with a pidfile and a log under ``<home>/run`` and ``<home>/logs``, so
``pipeline down`` can stop what ``pipeline up`` started, even from another shell.
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


class ServiceError(RuntimeError):
    """A background service exited or never became ready; the message points at its log."""


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
            os.kill(pid, 0)
        except ProcessLookupError:
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

    def stop(self, name: str, timeout: float = 30.0) -> bool:
        """SIGTERM the service's process group, SIGKILL after ``timeout``; True if it was running."""
        pid = self.pid(name)
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)
        (self.run_dir / f"{name}.pid").unlink(missing_ok=True)
        return True


def answers(url: str) -> bool:
    """Whether an HTTP endpoint answers 200: the readiness probe every local service uses."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
