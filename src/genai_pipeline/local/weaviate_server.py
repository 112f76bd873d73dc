"""A real Weaviate server for the embedded default and tests, built from source with ``go install``.

Weaviate's own embedded mode downloads a release tarball, which cannot happen offline; the server binary
built from the Go module proxy is the same program, with two listeners made to honour CLUSTER_BIND_ADDR
(:data:`BIND_EDITS`). It runs on loopback only, with anonymous access and no vectorizer module (the pipeline
supplies vectors).
"""

from __future__ import annotations

import os
from pathlib import Path

from genai_pipeline.config import Settings
from genai_pipeline.local.go_tools import SourceEdit, go_install, tool_path
from genai_pipeline.local.services import Services, answers

MODULE = "github.com/weaviate/weaviate/cmd/weaviate-server"
# Weaviate listens for gRPC and its internal data API on ":<port>", every interface, with no setting to change
# it. Built with these edits, both bind where memberlist does (CLUSTER_BIND_ADDR): loopback for the local
# server, and, unset as in the image, every interface as before.
BIND_EDITS = (
    SourceEdit(
        "github.com/weaviate/weaviate",
        "adapters/handlers/grpc/server.go",
        'fmt.Sprintf(":%d",',
        'fmt.Sprintf("%s:%d", state.ServerConfig.Config.Cluster.BindAddr,',
    ),
    SourceEdit(
        "github.com/weaviate/weaviate",
        "adapters/handlers/rest/clusterapi/serve.go",
        'fmt.Sprintf(":%d", port)',
        'fmt.Sprintf("%s:%d", appState.ServerConfig.Config.Cluster.BindAddr, port)',
    ),
)
BIND_LABEL = "-bind"


def binary_path(settings: Settings) -> Path:
    """Where the pinned server binary is cached."""
    return tool_path(settings.cache_dir, MODULE, settings.weaviate.server_version + BIND_LABEL)


def ensure_binary(settings: Settings) -> Path:
    """The pinned ``weaviate-server`` with :data:`BIND_EDITS`, built from the module proxy unless cached (once)."""
    return go_install(settings.cache_dir, MODULE, settings.weaviate.server_version, edits=BIND_EDITS, label=BIND_LABEL)


def server_env(settings: Settings) -> dict[str, str]:
    """Environment for a single-node, anonymous, vectorizer-less server with data under the home."""
    gossip = settings.weaviate.http_port + 1000
    return {
        **os.environ,
        "PERSISTENCE_DATA_PATH": str(settings.home / "weaviate"),
        "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "true",
        "DEFAULT_VECTORIZER_MODULE": "none",
        "ENABLE_MODULES": "",
        "GRPC_PORT": str(settings.weaviate.grpc_port),
        "CLUSTER_HOSTNAME": "node1",
        # Without this the Raft listener takes eth0's IPv6 address and exits ("too many colons").
        "CLUSTER_ADVERTISE_ADDR": "127.0.0.1",
        # Gossip and Raft listen on loopback only (gossip took every interface), and so do gRPC and the
        # internal data API (BIND_EDITS); the Go profiler, which listened on every interface at :6060, is off.
        "CLUSTER_BIND_ADDR": "127.0.0.1",
        "GO_PROFILING_DISABLE": "true",
        "CLUSTER_GOSSIP_BIND_PORT": str(gossip),
        "CLUSTER_DATA_BIND_PORT": str(gossip + 1),
        "RAFT_PORT": str(gossip + 2),
        "RAFT_INTERNAL_RPC_PORT": str(gossip + 3),
        "RAFT_BOOTSTRAP_EXPECT": "1",
        "DISABLE_TELEMETRY": "true",
        "LOG_LEVEL": "warning",
    }


def start_weaviate(settings: Settings, services: Services) -> int:
    """Start (or find) the local server the settings point at and wait until it is ready."""
    argv = [str(ensure_binary(settings)), "--host", "127.0.0.1", "--port", str(settings.weaviate.http_port)]
    return services.start(
        "weaviate",
        [*argv, "--scheme", "http"],
        server_env(settings),
        lambda: answers(f"http://127.0.0.1:{settings.weaviate.http_port}/v1/.well-known/ready"),
    )
