#!/usr/bin/env bash
# skaffold's custom builder for every pipeline image: `images/build.sh <image>` with the tag skaffold chose
# ($IMAGE = <registry>/<image>:<tag>, tagPolicy inputDigest: a new tag whenever the image's inputs change, which
# the chart then hands to exactly that image's pods). Then, by where the image must go:
#   PUSH_IMAGE=true           docker push (a remote cluster with a registry)
#   context genai-pipeline    imported into the local node's containerd (`make cluster-up` has no registry)
#   context kind-*            nothing here: skaffold runs `kind load` itself
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ref="${IMAGE:?skaffold sets IMAGE}"
name="${ref%:*}"
name="${name##*/}"
TAG="${ref##*:}" REGISTRY="${ref%/*:*}" VERIFY=0 bash "$REPO/images/build.sh" "$name"
if [[ "${PUSH_IMAGE:-false}" == true ]]; then
    docker push "$ref"
elif [[ $(kubectl config current-context 2>/dev/null || true) == genai-pipeline ]]; then
    bash "$REPO/scripts/cluster/cluster.sh" import "$ref"
fi
