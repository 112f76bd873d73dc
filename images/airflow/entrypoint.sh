#!/bin/sh
# `airflow <command>`, with the kubernetes_default connection (in-cluster, pipeline namespace, the local XCom
# sidecar image and its resources) derived from the PIPELINE_* settings unless one is given explicitly.
set -eu
if [ -z "${AIRFLOW_CONN_KUBERNETES_DEFAULT:-}" ]; then
    AIRFLOW_CONN_KUBERNETES_DEFAULT="$(pipeline kubernetes-connection)"
    export AIRFLOW_CONN_KUBERNETES_DEFAULT
fi
exec airflow "$@"
