#!/usr/bin/env bash
# The same single-node cluster contract as scripts/cluster/cluster.sh, on kind (a laptop with Docker, the
# `kind` binary and access to Docker Hub for the kindest/node image):
#
#   scripts/cluster/kind.sh up | down | import IMAGE...
#
# `up` creates the cluster from k8s/kind-config.yaml (the e2e volumes folder mounted into the node, the
# Airflow UI mapped to localhost:8080) and writes its kubeconfig where cluster.sh writes one, so
# scripts/e2e.sh deploys the same way on both (E2E_CLUSTER=kind; `make kind-up` does that and keeps it up).
# `import` is `kind load docker-image`: the node has the images, pullPolicy Never finds them.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PIPELINE_HOME="${PIPELINE_HOME:-$REPO/.pipeline}"
CLUSTER_DIR="$PIPELINE_HOME/cluster"
NAME=genai-pipeline

log() { printf '[kind] %s\n' "$*" >&2; }
command -v kind >/dev/null || { log "kind is not installed (https://kind.sigs.k8s.io); on a machine without a registry use scripts/cluster/cluster.sh"; exit 1; }

case "${1:-}" in
    up)
        mkdir -p "$CLUSTER_DIR/run" "$PIPELINE_HOME/kind-volumes"
        if ! kind get clusters 2>/dev/null | grep -qx "$NAME"; then
            (cd "$REPO" && kind create cluster --name "$NAME" --config k8s/kind-config.yaml --wait 120s)
        fi
        kind get kubeconfig --name "$NAME" >"$CLUSTER_DIR/kubeconfig"
        dirname "$(command -v kubectl)" >"$CLUSTER_DIR/run/bin"
        log "export KUBECONFIG=$CLUSTER_DIR/kubeconfig"
        ;;
    down)
        kind delete cluster --name "$NAME"
        ;;
    import)
        shift
        for image in "$@"; do kind load docker-image --name "$NAME" "$image"; done
        ;;
    *)
        echo "usage: $0 up|down|import IMAGE..." >&2
        exit 2
        ;;
esac
