#!/bin/sh
# Runs `airflow <command>` (the e2e manifests pass `scheduler`, `db migrate`, ...) or, like the official image's
# entrypoint, a command given in full (the official Airflow chart passes `bash -c "exec airflow scheduler"` and
# `airflow db check-migrations`). The kubernetes_default connection (in-cluster, pipeline namespace, the local
# XCom sidecar image and its resources) is derived from the PIPELINE_* settings unless one is given explicitly.
set -eu
if [ -z "${AIRFLOW_CONN_KUBERNETES_DEFAULT:-}" ]; then
    AIRFLOW_CONN_KUBERNETES_DEFAULT="$(pipeline kubernetes-connection)"
    export AIRFLOW_CONN_KUBERNETES_DEFAULT
fi
case "${1:-}" in
    airflow | bash | sh | python | python3 | pipeline) exec "$@" ;;
    *) exec airflow "$@" ;;
esac
