#!/bin/bash
# /entrypoint of the project's Airflow image, with the official image's semantics for the forms the official
# Airflow chart runs (tests/charts/airflow_chart_contract.yaml):
#   /entrypoint airflow <args>        -> airflow <args> (after the metadata database answers, see below)
#   /entrypoint bash|sh <args>        -> bash|sh <args>  (the chart's `bash -c "exec airflow scheduler"`)
#   /entrypoint python|python3 <args> -> python <args>
#   /entrypoint <anything else>       -> airflow <anything else>  (so the e2e manifests may pass `scheduler`)
# and one addition of the project's: `/entrypoint pipeline <args>` runs the pipeline CLI (the helm test pod).
#
# Before an airflow command the database is checked with `airflow db check` up to CONNECTION_CHECK_MAX_COUNT
# times (default 20), CONNECTION_CHECK_SLEEP_TIME seconds apart (default 3), as the official image does; the
# chart's probes set CONNECTION_CHECK_MAX_COUNT=0 to skip it. The kubernetes_default connection (in-cluster, the
# pipeline namespace, the XCom sidecar image and its resources) is derived from the PIPELINE_* settings unless
# one is given explicitly.
set -euo pipefail

if [[ -z "${AIRFLOW_CONN_KUBERNETES_DEFAULT:-}" ]]; then
    AIRFLOW_CONN_KUBERNETES_DEFAULT="$(pipeline kubernetes-connection)"
    export AIRFLOW_CONN_KUBERNETES_DEFAULT
fi

wait_for_metadata_database() {
    local max=${CONNECTION_CHECK_MAX_COUNT:-20} sleep_time=${CONNECTION_CHECK_SLEEP_TIME:-3} tries=0
    ((max > 0)) || return 0
    until airflow db check >/dev/null 2>&1; do
        if ((++tries >= max)); then
            echo "/entrypoint: the metadata database did not answer after $tries checks (airflow db check)" >&2
            airflow db check >&2 || true
            exit 1
        fi
        sleep "$sleep_time"
    done
}

case "${1:-}" in
    bash | sh | python | python3 | pipeline) exec "$@" ;;
    airflow) shift ;;
esac
wait_for_metadata_database
exec airflow "$@"
