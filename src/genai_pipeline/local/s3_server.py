"""A real S3-compatible server for tests and benches: versitygw serving a local folder, on loopback only.

Built from the Go module proxy like the other tools; each start gets random credentials, which reach clients
the way a cluster's do, through the ``AWS_*`` environment variables botocore reads.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from genai_pipeline.local.go_tools import ensure_versitygw
from genai_pipeline.local.services import Services, answers

SERVICE = "s3"
HEALTH_PATH = "/health"


@dataclass(frozen=True)
class S3Server:
    """Where the server listens and the credentials it accepts."""

    endpoint_url: str
    access_key: str
    secret_key: str

    def client_env(self) -> dict[str, str]:
        """The environment that points s3fs (botocore) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def start_s3_server(cache_dir: Path, services: Services, data_dir: Path, port: int) -> S3Server:
    """Start versitygw on ``127.0.0.1:port`` with buckets as folders of ``data_dir``; wait until it answers.

    The credentials travel in the environment, not on the command line other users can read. ``services``
    must be new (a server found running would not know these credentials).
    """
    server = S3Server(f"http://127.0.0.1:{port}", secrets.token_hex(10), secrets.token_urlsafe(30))
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ROOT_ACCESS_KEY_ID": server.access_key, "ROOT_SECRET_ACCESS_KEY": server.secret_key}
    argv = [str(ensure_versitygw(cache_dir)), "--port", f"127.0.0.1:{port}", "--health", HEALTH_PATH, "--quiet"]
    services.start(SERVICE, [*argv, "posix", str(data_dir)], env, lambda: answers(server.endpoint_url + HEALTH_PATH))
    return server
