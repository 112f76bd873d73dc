#!/usr/bin/env bash
# Make sure a Docker daemon answers: install Debian's docker.io (and debootstrap, for the base image)
# when missing, and start dockerd in the background when nothing is listening. Idempotent; does
# nothing when `docker info` already works. Only a daemon this script started is ever started here;
# it never stops or restarts one.
#
# Environment:
#   DOCKERD_ARGS   extra dockerd flags, e.g. --containerd=/run/containerd/containerd.sock to share the
#                  containerd a local Kubernetes node uses
#   DOCKERD_LOG    where dockerd logs (default /tmp/genai-pipeline-dockerd.log)
set -euo pipefail

log() { printf '[ensure-docker] %s\n' "$*" >&2; }

if docker info >/dev/null 2>&1; then
    exit 0
fi

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null || ! command -v docker >/dev/null; then
    if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
        log "no Docker engine here: install docker.io and debootstrap (needs root and apt)"
        exit 1
    fi
    log "installing docker.io and debootstrap from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi

if [[ $(id -u) != 0 ]]; then
    log "the Docker daemon is not running and only root can start it"
    exit 1
fi

DOCKERD_LOG="${DOCKERD_LOG:-/tmp/genai-pipeline-dockerd.log}"
log "starting dockerd ${DOCKERD_ARGS:-} (log: $DOCKERD_LOG)"
# shellcheck disable=SC2086  # DOCKERD_ARGS is a list of flags
nohup dockerd ${DOCKERD_ARGS:-} >"$DOCKERD_LOG" 2>&1 &
echo $! >"${DOCKERD_LOG%.log}.pid"
for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
        log "dockerd is up (pid $(cat "${DOCKERD_LOG%.log}.pid"))"
        exit 0
    fi
    sleep 1
done
log "dockerd did not answer within 60 s; see $DOCKERD_LOG"
tail -n 20 "$DOCKERD_LOG" >&2 || true
exit 1
