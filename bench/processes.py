"""What the benches need of processes: a free port to start a server on, and a process's memory figures."""

from __future__ import annotations

import socket
from pathlib import Path


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def status_bytes(pid: int, field: str) -> int:
    """A memory figure of ``/proc/<pid>/status`` in bytes (VmHWM: the peak resident set, VmRSS: now); 0 once gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) * 1024 for line in lines if line.startswith(f"{field}:")), 0)
