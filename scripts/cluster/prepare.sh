#!/usr/bin/env bash
# What the local node needs before the e2e deployment (k8s/e2e) goes on it: the restricted namespace, the
# hostPath-backed PersistentVolumes and their folders owned by uid 10001 (fsGroup does not apply to hostPath),
# and Airflow's signing keys in a Secret (random, made once). Used by scripts/e2e.sh and by
# `skaffold dev -p local-node` (a before-deploy hook).
#
#   scripts/cluster/prepare.sh [--fresh]     --fresh empties the volumes first (every e2e run starts clean)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PIPELINE_HOME="${PIPELINE_HOME:-$REPO/.pipeline}"
KUBECONFIG="${KUBECONFIG:-$PIPELINE_HOME/cluster/kubeconfig}"
KUBECTL="${KUBECTL:-$(cat "$PIPELINE_HOME/cluster/run/bin" 2>/dev/null || dirname "$(command -v kubectl)")/kubectl}"
NAMESPACE=genai-pipeline
VOLUMES=/var/lib/genai-pipeline-node/volumes

kctl() { "$KUBECTL" --kubeconfig "$KUBECONFIG" "$@"; }

kctl apply -f "$REPO/k8s/namespace.yaml" -f "$REPO/k8s/e2e/storage.yaml" >/dev/null
fresh=0
[[ "${1:-}" == --fresh ]] && fresh=1 && rm -rf "$VOLUMES"
install -d -o 10001 -g 10001 "$VOLUMES/shared" "$VOLUMES/shared/corpus" "$VOLUMES/weaviate"
# PVs from an earlier deployment keep their old claim: make them Available again (a fresh start frees them
# all; otherwise only the Released ones, so a bound volume of a running deployment stays bound).
for pv in genai-e2e-shared genai-e2e-weaviate; do
    if ((fresh)) || [[ $(kctl get pv "$pv" -o jsonpath='{.status.phase}') == Released ]]; then
        kctl patch pv "$pv" --type json -p '[{"op": "remove", "path": "/spec/claimRef"}]' >/dev/null 2>&1 || true
    fi
done
if ! kctl -n "$NAMESPACE" get secret genai-airflow >/dev/null 2>&1; then
    kctl create secret generic genai-airflow -n "$NAMESPACE" \
        --from-literal=jwt-secret="$(openssl rand -hex 32)" --from-literal=api-secret-key="$(openssl rand -hex 32)" >/dev/null
fi
