#!/usr/bin/env bash
# `make e2e`: the pipeline in kubernetes mode on a real single-node cluster, end to end.
#
#   1. cluster   scripts/cluster/cluster.sh up (Kubernetes 1.34 from the Go module proxy, cached)
#   2. images    images/build.sh for the images images/images.tsv marks e2e (only those missing), tagged with the
#                content hash images/tag.sh prints, then imported into the node's containerd (only those it lacks)
#   3. deploy    the restricted namespace, hostPath-backed volumes, the project chart with helm
#                (k8s/e2e/values.yaml + images.tag; the official Airflow and Weaviate charts cannot be fetched
#                here, so both dependencies are off and the chart is installed from a copy without its
#                dependency list: genai_pipeline.local.offline_chart), then Weaviate, PostgreSQL and Airflow
#                shaped like the official chart's (k8s/e2e, kustomize with the tag: the migration Job, then the
#                pod whose init container waits for it), then `helm test` (Weaviate, the collection, a step pod
#                dry run)
#   4. test      pytest tests/e2e: REST-triggered, Asset-chained ingestion whose every step is a pod;
#                counts against embedded mode; a re-run with 0 embedding calls; a deleted embed pod retried;
#                the fine-tuning chain (format, gate, submission as a finetune pod, deferred wait, results,
#                scoring as a generate pod) against the local model server on the host; last, one ingestion
#                with the store on S3 (k8s/e2e/s3-gateway.yaml) and no shared claim mounted
#   5. teardown  always, also on failure: every pod's and component's log is kept under
#                $PIPELINE_HOME/e2e/logs (printed on failure), then the cluster goes down
#
# Environment: KEEP_CLUSTER=1 leaves the cluster and deployment up afterwards (for debugging);
#              E2E_PYTEST_ARGS adds pytest arguments (e.g. -k fault); BENCH=1 runs bench/cluster.py instead;
#              DEPLOY_ONLY=1 stops after the deploy. (kind with the official charts: scripts/kind.sh.)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export PIPELINE_HOME="${PIPELINE_HOME:-$REPO/.pipeline}"
export PATH="$HOME/.local/bin:$PATH"
E2E_DIR="$PIPELINE_HOME/e2e"
LOGS="$E2E_DIR/logs"
NAMESPACE=genai-pipeline
VOLUMES=/var/lib/genai-pipeline-node/volumes
mapfile -t IMAGES < <(bash images/list.sh names e2e)
# The local model server runs on the host for the fine-tuning path; pods and the triggerer reach it at the
# bridge address (k8s/e2e/values.yaml: openai.base_url). A small step cap keeps the CPU job short.
MODEL_SERVER_HOME="$E2E_DIR/model-server"
MODEL_SERVER_STEPS="${E2E_MODEL_SERVER_STEPS:-16}"
CLUSTER="bash $REPO/scripts/cluster/cluster.sh"

log() { printf '[e2e] %s\n' "$*" >&2; }
declare -a TIMES=()
# phase NAME COMMAND...: run and time one phase.
phase() {
    local name=$1 start=$SECONDS
    shift
    log "== $name"
    "$@"
    TIMES+=("$name $((SECONDS - start))s")
}

collect_logs() {
    mkdir -p "$LOGS/pods"
    local pod container
    kctl get all,pvc,pv,events -A -o wide >"$LOGS/resources.txt" 2>&1 || true
    kctl describe pods -n "$NAMESPACE" >"$LOGS/pods-describe.txt" 2>&1 || true
    for pod in $(kctl get pods -n "$NAMESPACE" -o name 2>/dev/null); do
        for container in $(kctl get -n "$NAMESPACE" "$pod" -o jsonpath='{.spec.initContainers[*].name} {.spec.containers[*].name}'); do
            kctl logs -n "$NAMESPACE" "$pod" -c "$container" >"$LOGS/pods/${pod#pod/}.$container.log" 2>&1 || true
            # A container that restarted: why its last run ended.
            kctl logs -n "$NAMESPACE" "$pod" -c "$container" --previous >"$LOGS/pods/${pod#pod/}.$container.previous.log" 2>/dev/null \
                || rm -f "$LOGS/pods/${pod#pod/}.$container.previous.log"
        done
    done
    cp -r "$PIPELINE_HOME/cluster/logs" "$LOGS/cluster" 2>/dev/null || true
}

finish() {
    local status=$?
    set +e
    if [[ -f "$MODEL_SERVER_HOME/pid" ]]; then
        kill -- -"$(cat "$MODEL_SERVER_HOME/pid")" 2>/dev/null
        rm -f "$MODEL_SERVER_HOME/pid"
    fi
    if [[ -n "${KUBECONFIG:-}" ]] && kctl version >/dev/null 2>&1; then
        collect_logs
    fi
    if [[ $status != 0 ]]; then
        log "FAILED (exit $status); logs of every component and pod: $LOGS"
        for file in "$LOGS"/pods/airflow-*.scheduler.log "$LOGS"/cluster/kubelet.log; do
            [[ -f $file ]] && { log "--- tail of $file"; tail -n 40 "$file" >&2; }
        done
    fi
    if [[ "${KEEP_CLUSTER:-0}" == 1 ]]; then
        log "KEEP_CLUSTER=1: cluster left up (export KUBECONFIG=$KUBECONFIG)"
    else
        phase "teardown" $CLUSTER down
    fi
    log "times: ${TIMES[*]} | total $((SECONDS - E2E_START))s"
    exit $status
}

kctl() { "$KUBECTL" --kubeconfig "$KUBECONFIG" "$@"; }

deploy() {
    local helm chart line
    helm=$(uv run --frozen python -c 'from genai_pipeline.config import Settings; from genai_pipeline.local.go_tools import ensure_helm; print(ensure_helm(Settings().cache_dir))')
    chart=$(uv run --frozen python -m genai_pipeline.local.offline_chart "$E2E_DIR")
    KUBECTL="$KUBECTL" bash scripts/cluster/prepare.sh --fresh
    # The clients' one key setting (docs/deploy.md), the key the host's model server asks for.
    # The S3 gateway's root credentials, random per run; the pods get them as botocore reads them (docs/deploy.md,
    # "The store on S3"), and the test reads them from a file only this user can read.
    (umask 077 && printf 'AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\nAWS_ENDPOINT_URL=http://10.0.0.90:7070\nAWS_DEFAULT_REGION=us-east-1\n' \
        "$(openssl rand -hex 10)" "$(openssl rand -hex 24)" >"$E2E_S3_ENV")
    kctl -n "$NAMESPACE" delete secret genai-pipeline-secrets genai-e2e-s3 --ignore-not-found >/dev/null
    kctl -n "$NAMESPACE" create secret generic genai-e2e-s3 \
        --from-literal=access-key="$(sed -n 's/^AWS_ACCESS_KEY_ID=//p' "$E2E_S3_ENV")" \
        --from-literal=secret-key="$(sed -n 's/^AWS_SECRET_ACCESS_KEY=//p' "$E2E_S3_ENV")" >/dev/null
    local aws=()
    while IFS= read -r line; do aws+=(--from-literal="$line"); done <"$E2E_S3_ENV"
    kctl -n "$NAMESPACE" create secret generic genai-pipeline-secrets \
        --from-file=PIPELINE_OPENAI__API_KEY="$MODEL_SERVER_HOME/api-key" "${aws[@]}" >/dev/null
    "$helm" upgrade --install genai-pipeline "$chart" --namespace "$NAMESPACE" \
        --kubeconfig "$KUBECONFIG" -f k8s/e2e/values.yaml --set "images.tag=$TAG" --wait --timeout 5m >/dev/null
    overlay "$E2E_OVERLAY"
    kctl apply -k "$E2E_OVERLAY" >/dev/null
    kctl rollout status -n "$NAMESPACE" statefulset/weaviate --timeout=300s
    kctl rollout status -n "$NAMESPACE" statefulset/genai-airflow-postgresql --timeout=300s
    kctl wait -n "$NAMESPACE" --for=condition=complete job/genai-airflow-run-airflow-migrations --timeout=300s
    kctl rollout status -n "$NAMESPACE" deployment/airflow --timeout=300s
    kctl rollout status -n "$NAMESPACE" deployment/s3-gateway --timeout=120s
    # What a user runs after `helm install`: the release's own checks, as the launcher ServiceAccount.
    "$helm" test genai-pipeline --namespace "$NAMESPACE" --kubeconfig "$KUBECONFIG" --logs --timeout 5m \
        | tee "$LOGS/helm-test.log"
}

# The model server in its own process group (stopped by finish), listening on every address so pods reach it;
# so it asks for a key, random per run, which the pods send from the pipeline Secret (deploy makes it).
start_model_server() {
    rm -rf "$MODEL_SERVER_HOME" && mkdir -p "$MODEL_SERVER_HOME"
    (umask 077 && printf %s "$(openssl rand -hex 24)" >"$MODEL_SERVER_HOME/api-key")
    PIPELINE_HOME="$MODEL_SERVER_HOME" PIPELINE_MODEL_SERVER__HOST=0.0.0.0 PIPELINE_MODEL_SERVER__PORT=8088 \
        PIPELINE_MODEL_SERVER__API_KEY="$(cat "$MODEL_SERVER_HOME/api-key")" \
        PIPELINE_MODEL_SERVER__MAX_TRAIN_STEPS="$MODEL_SERVER_STEPS" HF_HUB_OFFLINE=1 \
        setsid uv run --frozen pipeline serve-models >"$LOGS/model-server.log" 2>&1 &
    echo $! >"$MODEL_SERVER_HOME/pid"
    local tries=0
    until curl -sf http://127.0.0.1:8088/health >/dev/null; do
        ((tries++ < 120)) || { log "model server did not start: $LOGS/model-server.log"; return 1; }
        sleep 1
    done
}

# overlay DIR: a kustomization over k8s/e2e that sets the tag of every image to the one just built.
overlay() {
    local dir=$1
    mkdir -p "$dir"
    cat >"$dir/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [$(realpath --relative-to="$dir" "$REPO/k8s/e2e")]
images:
  - {name: genai-pipeline/airflow, newTag: "$TAG"}
  - {name: genai-pipeline/weaviate, newTag: "$TAG"}
  - {name: genai-pipeline/postgres, newTag: "$TAG"}
  - {name: genai-pipeline/s3-gateway, newTag: "$TAG"}
EOF
}

E2E_START=$SECONDS
rm -rf "$LOGS" && mkdir -p "$LOGS"
trap finish EXIT

phase "install" make --no-print-directory install >/dev/null
phase "cluster" $CLUSTER up
export KUBECONFIG="$PIPELINE_HOME/cluster/kubeconfig"
KUBECTL="$(cat "$PIPELINE_HOME/cluster/run/bin")/kubectl"
TAG="$(bash images/tag.sh)"
export E2E_TAG="$TAG" E2E_KUBECTL="$KUBECTL" E2E_VOLUMES="$VOLUMES" E2E_LOGS="$LOGS" E2E_OVERLAY="$E2E_DIR/overlay" \
    E2E_S3_ENV="$E2E_DIR/s3.env" E2E_CHART_DIR="$E2E_DIR"
phase "images" env TAG="$TAG" VERIFY="${VERIFY:-0}" bash images/build.sh "${IMAGES[@]}"
refs=()
for image in "${IMAGES[@]}"; do refs+=("genai-pipeline/$image:$TAG"); done
phase "import" $CLUSTER import "${refs[@]}"
phase "model-server" start_model_server
phase "deploy" deploy
if [[ "${DEPLOY_ONLY:-0}" == 1 ]]; then
    log "deployed; Airflow: kubectl -n $NAMESPACE port-forward svc/airflow 8080"
elif [[ "${BENCH:-0}" == 1 ]]; then
    phase "bench" uv run --frozen python bench/cluster.py ${BENCH_ARGS:-}
else
    # shellcheck disable=SC2086  # E2E_PYTEST_ARGS is a list of arguments
    # In file order: the tests build on the state the one before left (tests/e2e/test_kubernetes_mode.py).
    phase "test" uv run --frozen pytest tests/e2e -m e2e -p no:cacheprovider -p no:randomly ${E2E_PYTEST_ARGS:-}
fi
