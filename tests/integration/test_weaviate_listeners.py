"""The local weaviate-server listens on loopback, but for the two listeners Weaviate 1.34 cannot bind elsewhere."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from genai_pipeline.local.services import Services

pytestmark = pytest.mark.integration


def test_gossip_raft_and_rest_listen_on_loopback_and_no_profiler_listens(weaviate_env: dict[str, str]) -> None:
    pid = Services(Path(weaviate_env["PIPELINE_HOME"])).pid("weaviate")
    assert pid, "the session's weaviate-server is not running"
    listening = {
        (conn.laddr.ip, conn.laddr.port)
        for conn in psutil.Process(pid).net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    }
    http, grpc = int(weaviate_env["PIPELINE_WEAVIATE__HTTP_PORT"]), int(weaviate_env["PIPELINE_WEAVIATE__GRPC_PORT"])
    gossip = http + 1000  # weaviate_server.server_env: gossip, internal data, Raft, Raft RPC follow the REST port
    assert 6060 not in {port for _, port in listening}  # the Go profiler listened on every interface
    # Weaviate 1.34 binds gRPC and its internal data API to every interface with no setting to change it.
    known_open = {grpc, gossip + 1}
    wide = {(ip, port) for ip, port in listening if ip not in ("127.0.0.1", "::1") and port not in known_open}
    assert not wide, f"listening beyond loopback: {sorted(wide)}"
    assert {("127.0.0.1", port) for port in (http, gossip, gossip + 2, gossip + 3)} <= listening
