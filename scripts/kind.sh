#!/usr/bin/env bash
# The laptop path: the umbrella chart with the official Airflow and Weaviate charts on kind.
#
#   scripts/kind.sh up       kind cluster from k8s/kind/cluster.yaml (UIs mapped to localhost:8080 and :8090),
#                            the restricted namespace, the shared store's hostPath volume
#   scripts/kind.sh deploy   build the images images/images.tsv marks kind (images/build.sh, one content-hash
#                            tag; only those missing), `kind load` them,
#                            the Secret (kept if it exists), `helm dependency build`, `helm upgrade --install`
#                            with k8s/kind/values-kind.yaml, then `helm test`
#   scripts/kind.sh down     delete the cluster
#   scripts/kind.sh helm-args TAG   print deploy's `helm upgrade --install` arguments, one per line
#
# Needs Docker, kind, kubectl, helm and network access to Docker Hub and the two chart repositories. The dev
# loop with rebuilds on change is `skaffold dev -p kind` instead of `deploy`.
# Secret genai-pipeline-secrets: a random model server key (PIPELINE_OPENAI__API_KEY: the in-cluster model server
# requires it, every client sends it) and WEAVIATE_API_KEY (default: a random key), made once, never printed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
NAME=genai-pipeline
NAMESPACE=genai-pipeline
CONTEXT="kind-$NAME"
SECRET=genai-pipeline-secrets
mapfile -t IMAGES < <(bash images/list.sh names kind)
HELM="${HELM:-helm}"

log() { printf '[kind] %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null || { log "$1 is not installed ($2)"; exit 1; }; }
kctl() { kubectl --context "$CONTEXT" "$@"; }

up() {
    need kind https://kind.sigs.k8s.io
    need kubectl https://kubernetes.io/docs/tasks/tools/
    if ! kind get clusters 2>/dev/null | grep -qx "$NAME"; then
        kind create cluster --config k8s/kind/cluster.yaml --wait 120s
    fi
    # The shared store's folder on the node, owned by the uid every pipeline pod runs as.
    docker exec "$NAME-control-plane" install -d -o 10001 -g 10001 /var/lib/genai-pipeline/shared
    kctl apply -f k8s/namespace.yaml -f k8s/kind/storage.yaml
    log "cluster up (context $CONTEXT); next: make deploy"
}

secret() {
    if ! kctl -n "$NAMESPACE" get secret "$SECRET" >/dev/null 2>&1; then
        local weaviate_key="${WEAVIATE_API_KEY:-$(openssl rand -hex 24)}"
        kctl -n "$NAMESPACE" create secret generic "$SECRET" \
            --from-literal=PIPELINE_WEAVIATE__API_KEY="$weaviate_key" \
            --from-literal=AUTHENTICATION_APIKEY_ALLOWED_KEYS="$weaviate_key" \
            --from-literal=PIPELINE_OPENAI__API_KEY="$(openssl rand -hex 24)" >/dev/null
        log "Secret $SECRET created"
    elif [[ -z "$(kctl -n "$NAMESPACE" get secret "$SECRET" -o jsonpath='{.data.PIPELINE_OPENAI__API_KEY}')" ]]; then
        # Made before the model server demanded a key: without the entry its pod cannot start.
        kctl -n "$NAMESPACE" patch secret "$SECRET" --type merge \
            -p "{\"stringData\": {\"PIPELINE_OPENAI__API_KEY\": \"$(openssl rand -hex 24)\"}}" >/dev/null
        log "Secret $SECRET: model server key added"
    else
        log "Secret $SECRET exists: kept"
    fi
}

# helm_args TAG: the `helm upgrade --install` arguments, one per line (`scripts/kind.sh helm-args TAG` prints them
# for the chart tests: with --wait, no Helm hook may hold back what the pods wait for).
helm_args() {
    printf '%s\n' upgrade --install "$NAME" charts/genai-pipeline --kube-context "$CONTEXT" --namespace "$NAMESPACE" \
        -f k8s/kind/values-kind.yaml --set "images.tag=$1" --set "airflow.images.airflow.tag=$1" \
        --set "airflow.defaultAirflowTag=$1" --wait --timeout 15m
}

deploy() {
    need kind https://kind.sigs.k8s.io
    need "$HELM" https://helm.sh
    local tag refs=()
    tag="$(bash images/tag.sh)"
    TAG="$tag" bash images/build.sh "${IMAGES[@]}"
    for image in "${IMAGES[@]}"; do refs+=("genai-pipeline/$image:$tag"); done
    kind load docker-image --name "$NAME" "${refs[@]}"
    secret
    "$HELM" dependency build charts/genai-pipeline
    local args
    mapfile -t args < <(helm_args "$tag")
    "$HELM" "${args[@]}"
    "$HELM" test "$NAME" --kube-context "$CONTEXT" --namespace "$NAMESPACE" --logs
    log "Airflow: http://localhost:8080 (user admin; password: see the release notes, helm get notes $NAME -n $NAMESPACE)"
    log "web page: http://localhost:8090"
}

case "${1:-}" in
    up) up ;;
    deploy) deploy ;;
    helm-args) helm_args "${2:?usage: $0 helm-args TAG}" ;;
    down) need kind https://kind.sigs.k8s.io; kind delete cluster --name "$NAME" ;;
    *) echo "usage: $0 up|deploy|down|helm-args TAG" >&2; exit 2 ;;
esac
