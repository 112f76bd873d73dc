"""The local weaviate-server listens on loopback only: nobody else on the network reaches any of its ports."""

from __future__ import annotations

import socket
from pathlib import Path

import psutil
import pytest

from genai_pipeline.local.services import Services

pytestmark = pytest.mark.integration


def outward_addresses() -> list[str]:
    """The machine's IPv4 addresses other than loopback (what a neighbour on the LAN connects to)."""
    return [
        address.address
        for addresses in psutil.net_if_addrs().values()
        for address in addresses
        if address.family == socket.AF_INET and not address.address.startswith("127.")
    ]


def test_every_listener_is_on_loopback_and_refuses_the_machines_other_addresses(
    weaviate_env: dict[str, str],
) -> None:
    pid = Services(Path(weaviate_env["PIPELINE_HOME"])).pid("weaviate")
    assert pid, "the session's weaviate-server is not running"
    listening = {
        (conn.laddr.ip, conn.laddr.port)
        for conn in psutil.Process(pid).net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    }
    http, grpc = int(weaviate_env["PIPELINE_WEAVIATE__HTTP_PORT"]), int(weaviate_env["PIPELINE_WEAVIATE__GRPC_PORT"])
    gossip = http + 1000  # weaviate_server.server_env: gossip, internal data, Raft, Raft RPC follow the REST port
    ports = {http, grpc, gossip, gossip + 1, gossip + 2, gossip + 3}
    assert 6060 not in {port for _, port in listening}  # the Go profiler listened on every interface
    assert {("127.0.0.1", port) for port in ports} <= listening  # gRPC and internal data too (BIND_EDITS)
    wide = sorted((ip, port) for ip, port in listening if ip not in ("127.0.0.1", "::1"))
    assert not wide, f"listening beyond loopback: {wide}"
    for address in outward_addresses():
        for port in sorted(ports):
            with pytest.raises(ConnectionRefusedError), socket.create_connection((address, port), timeout=3):
                pass
