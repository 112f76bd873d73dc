#!/usr/bin/env bash
# Check built step images the way a hardened pod runs them: read-only root filesystem, a tmpfs at
# /tmp, uid 10001, no network, all capabilities dropped.
#
#   every image  bash and python on PATH; runs as 10001 with HOME etc. under /tmp; every step the
#                registry puts in it imports (genai_pipeline.steps.registry); the step runner answers; the
#                decorator's own pattern (write /tmp/script.py, run it) works
#   the step images (one dependency set each, images/images.tsv)
#                `import torch` fails; but in embed and generate `import onnxruntime` fails; weaviate only in
#                control and generate; numpy not in chunk and finetune-submit
#   chunk        the chunk step, for real, on a batch in a mounted store (counts with the MiniLM tokenizer)
#   embed, generate
#                a real embedding: shape (1, 384), unit norm (generate embeds the topic with the same model)
#   model-server import torch / transformers / onnxruntime, a real embedding, and the chat model as the
#                server gets it at its first start: the packaged GGUF de-quantised into the cache, then a
#                short greedy answer from it
#
#   airflow      `airflow version` is 3.x, also as `bash -c "exec airflow version"` (the official chart's
#                form); the baked-in DAGs parse in kubernetes mode
#   weaviate     the server binary runs as 10001
#   postgres     initialises its data volume on the first start and takes a password login over TCP
#   xcom-sidecar the provider's loop, `cat` over exec and its (fallback) kill: the container exits 0
#
# Usage: images/verify.sh [image ...]     Environment: TAG=$(images/tag.sh) REGISTRY=genai-pipeline
# shellcheck disable=SC2016  # single-quoted commands expand inside the container, on purpose
set -euo pipefail

TAG="${TAG:-$(bash "$(dirname "${BASH_SOURCE[0]}")/tag.sh")}"
REGISTRY="${REGISTRY:-genai-pipeline}"
images=("$@")
[[ ${#images[@]} -gt 0 ]] || mapfile -t images < <(bash "$(dirname "${BASH_SOURCE[0]}")/list.sh" names)

failures=0
# One shared store for the step checks: chunk writes chunks there, embed embeds them.
store=$(mktemp -d)
chmod 0777 "$store"
trap 'rm -rf "$store"' EXIT
ok() { printf '[verify] ok    %-13s %s\n' "$1" "$2" >&2; }
bad() { printf '[verify] FAIL  %-13s %s\n' "$1" "$2" >&2; failures=$((failures + 1)); }

# Like the pod: read-only root, /tmp a tmpfs, non-root, no capabilities, no network.
# shellcheck disable=SC2054  # the commas belong to --tmpfs's options
# CONNECTION_CHECK_MAX_COUNT=0: the Airflow image's /entrypoint would first wait for a metadata database.
hardened=(--rm --read-only --tmpfs /tmp:rw,exec,size=512m --user 10001:10001 --cap-drop ALL
          --security-opt no-new-privileges --network none -e CONNECTION_CHECK_MAX_COUNT=0)

run() {  # run <image> <cmd...>: output on stdout, status as exit code
    local image=$1
    shift
    docker run "${hardened[@]}" "$REGISTRY/$image:$TAG" "$@" 2>&1
}

expect_absent() {  # expect_absent <image> <module>
    local out
    if out=$(run "$1" python -c "import $2" 2>&1); then
        bad "$1" "import $2 succeeded; it must not be in this image"
    elif grep -q "No module named '$2'" <<<"$out"; then
        ok "$1" "no $2"
    else
        bad "$1" "import $2 failed for another reason: $(tail -n 1 <<<"$out")"
    fi
}

for image in "${images[@]}"; do
    ref="$REGISTRY/$image:$TAG"
    if ! docker image inspect "$ref" >/dev/null 2>&1; then
        bad "$image" "$ref not built"
        continue
    fi

    # The cluster images: their own contract, not a step runner's.
    case $image in
        airflow)
            if out=$(run "$image" version 2>&1) && [[ $(tail -n 1 <<<"$out") == 3.* ]]; then
                ok "$image" "airflow $(tail -n 1 <<<"$out")"
            else
                bad "$image" "airflow version: $(tail -n 3 <<<"$out")"
            fi
            # The official Airflow chart's command form: a full command line, not an airflow subcommand.
            if out=$(run "$image" bash -c "exec airflow version" 2>&1) && [[ $(tail -n 1 <<<"$out") == 3.* ]]; then
                ok "$image" "runs the official chart's \`bash -c \"exec airflow ...\"\` commands"
            else
                bad "$image" "bash -c exec airflow version: $(tail -n 3 <<<"$out")"
            fi
            # Parsed as the dag-processor parses them, in kubernetes mode: no import errors, every step a pod.
            if out=$(docker run "${hardened[@]}" --tmpfs /opt/airflow:rw,uid=10001,gid=10001 \
                -e PIPELINE_RUNTIME__MODE=kubernetes -e PIPELINE_STORE_URI=/data/store -e PIPELINE_RUNTIME__IMAGE_TAG="$TAG" \
                --entrypoint python "$REGISTRY/$image:$TAG" -c '
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder="/opt/pipeline/dags")
assert not bag.import_errors, bag.import_errors
print(sorted(bag.dag_ids))' 2>&1); then
                ok "$image" "DAGs parse in kubernetes mode: $(tail -n 1 <<<"$out")"
            else
                bad "$image" "DAG parse: $(tail -n 5 <<<"$out")"
            fi
            continue
            ;;
        weaviate)
            if out=$(run "$image" --help 2>&1) && grep -q -- "--port" <<<"$out"; then ok "$image" "weaviate-server runs as $(docker image inspect -f '{{.Config.User}}' "$ref")"; else bad "$image" "weaviate-server --help: $(tail -n 3 <<<"$out")"; fi
            continue
            ;;
        postgres)
            # First start as the e2e StatefulSet runs it: initialise the data volume, accept a password login.
            cid=$(docker run -d "${hardened[@]:1}" --tmpfs /var/lib/postgresql/data:rw,uid=10001,gid=10001 \
                -e POSTGRES_PASSWORD=verify -e POSTGRES_DB=airflow "$ref")
            answered=0
            for _ in $(seq 1 30); do
                if docker exec -e PGPASSWORD=verify "$cid" psql -h 127.0.0.1 -U postgres -d airflow -tAc 'select 1' 2>/dev/null | grep -qx 1; then
                    answered=1 && break
                fi
                sleep 1
            done
            if ((answered)); then ok "$image" "initialised, password login to database airflow as $(docker image inspect -f '{{.Config.User}}' "$ref")"; else bad "$image" "no answer: $(docker logs "$cid" 2>&1 | tail -n 5)"; fi
            docker rm -f "$cid" >/dev/null 2>&1 || true
            continue
            ;;
        xcom-sidecar)
            # What the provider does with it: its waiting loop as the main process, `cat` over exec, then its
            # kill over exec, after which the container must exit 0.
            cid=$(docker run -d "${hardened[@]:1}" "$ref" sh -c 'trap "exit 0" INT; while true; do sleep 1; done;')
            sleep 1
            docker exec "$cid" sh -c 'mkdir -p /tmp/x && echo "{}" > /tmp/x/r.json && cat /tmp/x/r.json' >/dev/null
            # Debian's busybox has no pgrep: the provider's first kill command fails on stderr and it runs its
            # fallback, this /proc loop (PodManager.extract_xcom_kill), which must end the loop.
            docker exec "$cid" sh -c 'for f in /proc/[0-9]*/comm; do [ -O $f ] && read c < $f && [ "$c" = "sh" ] && pid=${f%/comm} && kill -2 ${pid##*/}; done' >/dev/null 2>&1 || true
            status=$(timeout 10 docker wait "$cid" || echo timeout)
            docker rm -f "$cid" >/dev/null 2>&1 || true
            if [[ $status == 0 ]]; then ok "$image" "XCom loop, cat over exec, the kill: exit 0"; else bad "$image" "sidecar kill: $status"; fi
            continue
            ;;
    esac
    if out=$(run "$image" bash -c 'command -v bash python && id -u && echo "HOME=$HOME" && python --version'); then
        ok "$image" "$(tr '\n' ' ' <<<"$out")"
    else
        bad "$image" "bash/python: $out"
    fi
    if out=$(run "$image" python -c '
import importlib, sys
import genai_pipeline.runner
from genai_pipeline.steps.registry import STEPS
names = [name for name, spec in STEPS.items() if spec.image == sys.argv[1]]
for name in names:
    module, function = STEPS[name].target.split(":")
    getattr(importlib.import_module(module), function)
print(f"runner and {len(names)} steps import")' "$image"); then
        ok "$image" "$out"
    else
        bad "$image" "step imports: $(tail -n 3 <<<"$out")"
    fi
    # No arguments: the runner prints its usage and exits 2.
    out=$(docker run "${hardened[@]}" "$ref" 2>&1) && status=0 || status=$?
    if [[ $status == 2 && $out == usage:* ]]; then ok "$image" "default CMD is the step runner"; else bad "$image" "CMD: ($status) $out"; fi
    # What @task.kubernetes does: decode a script into /tmp, run it with bash -cx.
    if out=$(run "$image" bash -cx 'python -c "print(1 + 1)" > /tmp/script.out && python -c "import json; json.dump({\"ok\": True}, open(\"/tmp/return.json\", \"w\"))" && cat /tmp/return.json'); then
        ok "$image" "decorator pattern (bash -cx, script and result in /tmp): $(grep '^{' <<<"$out")"
    else
        bad "$image" "script in /tmp: $out"
    fi
    if out=$(run "$image" bash -c '! touch /opt/x 2>/dev/null && ! touch /home/pipeline/x 2>/dev/null \
            && mkdir -p "$XDG_CACHE_HOME" "$PIPELINE_HOME" && touch "$HOME/x" && echo "HOME=$HOME"'); then
        ok "$image" "root filesystem read-only, HOME/XDG_CACHE_HOME/PIPELINE_HOME writable under /tmp"
    else
        bad "$image" "read-only check: $out"
    fi

    case $image in
        chunk | control | embed | finetune | finetune-submit | generate) expect_absent "$image" torch ;;&
        chunk | control | finetune | finetune-submit) expect_absent "$image" onnxruntime ;;&
        chunk | embed | finetune | finetune-submit) expect_absent "$image" weaviate ;;&
        chunk | finetune-submit) expect_absent "$image" numpy ;;
    esac

    case $image in
        embed | generate | model-server)
            if out=$(run "$image" python -c "
import numpy as np
from genai_pipeline.config import get_settings
from genai_pipeline.models.embeddings import make_embedder
v = make_embedder(get_settings()).embed(['hello'])
print(v.shape, round(float(np.linalg.norm(v[0])), 4))"); then
                if [[ $(tail -n 1 <<<"$out") == "(1, 384) 1.0" ]]; then ok "$image" "embedding $(tail -n 1 <<<"$out")"; else bad "$image" "embedding: $out"; fi
            else
                bad "$image" "embedding failed: $(tail -n 3 <<<"$out")"
            fi
            ;;&
        model-server)
            if out=$(run "$image" python -c 'import torch, transformers, onnxruntime; print("torch", torch.__version__, "transformers", transformers.__version__)'); then
                ok "$image" "$out"
            else
                bad "$image" "torch/transformers: $(tail -n 3 <<<"$out")"
            fi
            # A 1 GB /tmp: the fp32 checkpoint is 540 MB.
            if out=$(docker run "${hardened[@]/size=512m/size=1g}" "$REGISTRY/$image:$TAG" python -c '
from genai_pipeline.config import get_settings
from genai_pipeline.models.chat import ChatModel, base_checkpoint
settings = get_settings()
folder = base_checkpoint(settings.cache_dir, settings.model_server.chat_model_dir)
reply = ChatModel(folder).complete([{"role": "user", "content": "What is the capital of France?"}], max_tokens=8)
print(folder, repr(reply.text))' 2>&1) && grep -q "Paris" <<<"$(tail -n 1 <<<"$out")"; then
                ok "$image" "chat model converted at start: $(tail -n 1 <<<"$out")"
            else
                bad "$image" "chat model: $(tail -n 5 <<<"$out")"
            fi
            ;;
        chunk)
            # The real chunk step on one batch of the packaged sample knowledge base, store on a volume: the
            # batch manifest as the plan step cuts it, then the step with its descriptor (pipefail: a failing
            # step is a failed check, whatever `tail` prints). Its result is the embed check's input.
            if out=$(docker run "${hardened[@]}" -v "$store:/data" -e PIPELINE_STORE_URI=/data "$REGISTRY/$image:$TAG" bash -c '
set -eo pipefail
task=$(python - <<"PY"
import json
from pathlib import Path
import genai_pipeline
from genai_pipeline.steps.documents import scan_source
from genai_pipeline.steps.ingest_store import RunPlan, RunRecord
from genai_pipeline.steps.planning import cut_batches
from genai_pipeline.store import Store
kb = Path(genai_pipeline.__file__).parent / "sample_kb"
docs = scan_source("pipeline-docs", str(kb), max_bytes=2_000_000).documents
(batch,) = cut_batches([(d, "verify") for d in docs], max_bytes=10**9, max_docs=10**6)
run = RunRecord(Store("/data"), "verify")
lists = ("decoded", "rejected", "aliases", "hidden", "hard_links", "removed", "prune_refused", "stale", "unavailable_sources")
run.write_plan(RunPlan(started_at=0, plan_seconds=0, dry_run=False, sources={"pipeline-docs": str(kb)}, documents=len(docs),
                       changed=len(docs), unchanged=0, unconfigured_sources={}, batches=1, model="verify", **{k: [] for k in lists}))
run.write_manifest(0, batch)
print(json.dumps({"run_key": "verify", "batch": 0, "docs": len(batch), "bytes": sum(e.size for e in batch), "label": "verify"}))
PY
)
python -m genai_pipeline.runner chunk "$task" | tail -n 1 | tee /data/chunked.json'); then
                ok "$image" "chunk step: $(tail -n 1 <<<"$out")"
            else
                bad "$image" "chunk step: $(tail -n 5 <<<"$out")"
            fi
            ;;
    esac
    if [[ $image == embed && -s $store/chunked.json ]]; then
        # The embed step, for real, on the chunks the chunk image just wrote (its result is the descriptor).
        if out=$(docker run "${hardened[@]}" -v "$store:/data" -e PIPELINE_STORE_URI=/data "$REGISTRY/$image:$TAG" \
            python -m genai_pipeline.runner embed "$(cat "$store/chunked.json")"); then
            ok "$image" "embed step: $(tail -n 1 <<<"$out")"
        else
            bad "$image" "embed step: $(tail -n 5 <<<"$out")"
        fi
    fi
done

if [[ $failures -gt 0 ]]; then
    echo "[verify] $failures check(s) failed" >&2
    exit 1
fi
echo "[verify] all checks passed: ${images[*]}" >&2
