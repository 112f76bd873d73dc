#!/usr/bin/env bash
# What the local node needs before the e2e deployment (k8s/e2e) goes on it: the restricted namespace, the
# hostPath-backed PersistentVolumes and their folders owned by uid 10001 (fsGroup does not apply to hostPath),
# and Airflow's Secrets (random, made once). Used by scripts/e2e.sh and by
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
install -d -o 10001 -g 10001 "$VOLUMES/shared" "$VOLUMES/shared/corpus" "$VOLUMES/weaviate" "$VOLUMES/postgres"
# PVs from an earlier deployment keep their old claim: make them Available again (a fresh start frees them
# all; otherwise only the Released ones, so a bound volume of a running deployment stays bound).
for pv in genai-e2e-shared genai-e2e-weaviate genai-e2e-postgres; do
    if ((fresh)) || [[ $(kctl get pv "$pv" -o jsonpath='{.status.phase}') == Released ]]; then
        kctl patch pv "$pv" --type json -p '[{"op": "remove", "path": "/spec/claimRef"}]' >/dev/null 2>&1 || true
    fi
done
# The Secrets the official chart would make for release genai-airflow (its names and keys:
# tests/charts/official_airflow_chart.yaml), random and made once; the metadata connection names the e2e
# PostgreSQL's Service (k8s/e2e/postgres.yaml) with the password its own Secret gives it.
secret() {  # secret NAME KEY=VALUE...: create it unless it exists
    local name=$1 args=()
    shift
    kctl -n "$NAMESPACE" get secret "$name" >/dev/null 2>&1 && return
    for pair in "$@"; do args+=(--from-literal="$pair"); done
    kctl -n "$NAMESPACE" create secret generic "$name" "${args[@]}" >/dev/null
}
password=$(kctl -n "$NAMESPACE" get secret genai-airflow-postgresql -o jsonpath='{.data.password}' 2>/dev/null | base64 -d || true)
password=${password:-$(openssl rand -hex 24)}
secret genai-airflow-postgresql "password=$password"
secret genai-airflow-metadata "connection=postgresql://postgres:$password@10.0.0.82:5432/airflow?sslmode=disable"
# A Fernet key is 32 random bytes in URL-safe base64 (docs/deploy.md makes it the same way).
secret genai-airflow-fernet-key "fernet-key=$(openssl rand -base64 32 | tr '+/' '-_')"
secret genai-airflow-jwt-secret "jwt-secret=$(openssl rand -hex 32)"
secret genai-airflow-api-secret-key "api-secret-key=$(openssl rand -hex 32)"
