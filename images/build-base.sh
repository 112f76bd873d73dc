#!/usr/bin/env bash
# Build the step images' base without any container registry: a Debian minbase root filesystem made with
# debootstrap from the Debian mirror apt already uses, imported with `docker import`.
#
#   genai-pipeline/base:bookworm       bash (minbase), python3 (3.11) with venv/ensurepip, ca-certificates and a
#                                      `python` -> python3 symlink (Airflow's @task.kubernetes runs the literal
#                                      `python` and `bash`): the base of every step image
#   genai-pipeline/base:trixie-torch   the same on trixie (python3 3.13) plus Debian's CPU-only torch
#                                      (python3-torch 2.6.0, libtorch2.6) and OpenBLAS built for OpenMP: the
#                                      model server's base (images/build.sh, TORCH_SOURCE=system)
#
# The tag names the variant: <suite>[-torch]. A `-torch` base installs python3-torch without Recommends and
# leaves out, with dpkg path-excludes, what a CPU-only torch never loads: the C++ test binaries
# (libtorch-test, torch/bin) and the AMD GPU stack (ROCm runtime, LLVM 17) that Open MPI's UCX pulls in for
# its ROCm transport only. A check then fails the build if any shared object left in /usr/lib or torch
# misses a library, and imports torch. OpenBLAS is the OpenMP build: it shares torch's OpenMP threads, where
# the pthread build's own threads spin against them (on 2 cores SmolLM2 then generates 3 tokens/s, not 12).
#
# Idempotent: does nothing when the image already exists (FORCE=1 rebuilds it).
#
# Environment:
#   BASE_IMAGE   tag to create              (default genai-pipeline/base:bookworm)
#   MIRROR       Debian mirror URL          (default: the first URIs/deb line of apt's own sources)
#   SUITE        Debian suite               (default: the tag without -torch, e.g. bookworm, trixie)
#   PACKAGES     extra Debian packages      (default: python3-torch libopenblas0-openmp for a -torch tag)
#   WORK_DIR     where the rootfs is built  (default /var/tmp/genai-pipeline-base/<tag>)
#   FORCE=1      rebuild even if the image exists
#   UPGRADE=0    skip applying <suite>-updates / <suite>-security inside the rootfs
set -euo pipefail

BASE_IMAGE="${BASE_IMAGE:-genai-pipeline/base:bookworm}"
VARIANT="${BASE_IMAGE##*:}"
SUITE="${SUITE:-${VARIANT%-torch}}"
TORCH=0
[[ "$VARIANT" == *-torch ]] && TORCH=1
if [[ $TORCH == 1 ]]; then
    PACKAGES="${PACKAGES-python3-torch libopenblas0-openmp}"
else
    PACKAGES="${PACKAGES-}"
fi
WORK_DIR="${WORK_DIR:-/var/tmp/genai-pipeline-base/$VARIANT}"
UPGRADE="${UPGRADE:-1}"

log() { printf '[build-base] %s\n' "$*" >&2; }

if [[ "${FORCE:-0}" != 1 ]] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "$BASE_IMAGE exists (FORCE=1 rebuilds it)"
    exit 0
fi

for tool in debootstrap docker tar; do
    command -v "$tool" >/dev/null || { log "missing $tool (apt-get install -y docker.io debootstrap)"; exit 1; }
done
if [[ $(id -u) != 0 ]]; then
    log "debootstrap needs root"
    exit 1
fi

detect_mirror() {
    local line
    # deb822 sources first (URIs: ...), then one-line sources (deb URL suite ...).
    line=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1 | awk '{print $2}')
    if [[ -z "$line" ]]; then
        line=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | grep -v security | grep -i debian | head -n1 | awk '{print $2}')
    fi
    echo "${line:-http://deb.debian.org/debian}"
}
MIRROR="${MIRROR:-$(detect_mirror)}"
SECURITY_MIRROR="${SECURITY_MIRROR:-${MIRROR%/debian}/debian-security}"

ROOTFS="$WORK_DIR/rootfs"
log "debootstrap $SUITE (minbase) from $MIRROR into $ROOTFS"
rm -rf "$ROOTFS"
mkdir -p "$ROOTFS"
debootstrap --variant=minbase \
    --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$ROOTFS" "$MIRROR"

cat >"$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF

if [[ $TORCH == 1 ]]; then
    # Set before anything is unpacked: dpkg then never writes these files (the packages stay installed, so apt
    # is consistent). A CPU-only torch loads none of them; the check below proves nothing left needs them.
    mkdir -p "$ROOTFS/etc/dpkg/dpkg.cfg.d"
    cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/genai-pipeline-torch-cpu" <<'EXCLUDES'
# images/build-base.sh: files a CPU-only torch never loads.
# C++ test binaries (python3-torch depends on libtorch-test; torch/bin holds more, beside torch_shm_manager).
path-exclude=/usr/lib/libtorch-test/*
path-exclude=/usr/lib/python3/dist-packages/torch/bin/*
path-include=/usr/lib/python3/dist-packages/torch/bin/torch_shm_manager
# The AMD GPU stack: Open MPI -> UCX pulls it in for UCX's ROCm transport plugins only.
path-exclude=/usr/lib/*/ucx/*rocm*
path-exclude=/usr/lib/*/libamdhip64.so*
path-exclude=/usr/lib/*/libamd_comgr.so*
path-exclude=/usr/lib/*/libhsa-runtime64.so*
path-exclude=/usr/lib/*/libLLVM-17.so*
EXCLUDES
fi

if [[ "$UPGRADE" == 1 || -n "$PACKAGES" ]]; then
    cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf" 2>/dev/null || true
    in_rootfs() { chroot "$ROOTFS" /usr/bin/env DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
    in_rootfs apt-get update -qq
    if [[ "$UPGRADE" == 1 ]]; then
        log "applying $SUITE-updates and $SUITE-security"
        in_rootfs apt-get -y -qq -o Dpkg::Options::=--force-confold upgrade
    fi
    if [[ -n "$PACKAGES" ]]; then
        log "installing $PACKAGES (no Recommends)"
        # shellcheck disable=SC2086  # a list of package names
        in_rootfs apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
    fi
    : >"$ROOTFS/etc/resolv.conf"
fi

TORCH_VERSION=
if [[ $TORCH == 1 ]]; then
    # Every shared object left under /usr/lib (torch's own included) finds all its libraries, and torch computes.
    # shellcheck disable=SC2016  # expanded inside the rootfs
    missing=$(chroot "$ROOTFS" /bin/bash -c 'find /usr/lib -name "*.so*" -type f | while read -r f; do
        ldd "$f" 2>/dev/null | grep -q "not found" && echo "$f: $(ldd "$f" | grep "not found" | tr -s " \t" " ")"; done' || true)
    if [[ -n "$missing" ]]; then
        log "libraries missing after the path-excludes:"
        printf '%s\n' "$missing" >&2
        exit 1
    fi
    TORCH_VERSION=$(chroot "$ROOTFS" python3 -c '
import torch
assert not torch.cuda.is_available()
x = torch.ones(64, 64)
assert float((x @ x).sum()) == 64**3
print(torch.__version__)' 2>/dev/null | tail -n 1)
    [[ -n "$TORCH_VERSION" ]] || { log "import torch failed in the rootfs"; exit 1; }
    blas=$(chroot "$ROOTFS" /bin/bash -c 'readlink -f /usr/lib/*-linux-gnu/libblas.so.3')
    log "torch $TORCH_VERSION (CPU only) from $SUITE, BLAS $blas; every library resolves"
fi

# The step decorator runs the literal `python`.
ln -sf python3 "$ROOTFS/usr/bin/python"

# Shrink: package caches and lists, docs, man pages, non-English locales, byte-code caches.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/lib/apt/lists/* \
    "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/* \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*
find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
# torch keeps the byte code Debian compiled: nothing is cached at run time under a read-only root, and
# `import torch` takes a second longer without it.
find "$ROOTFS/usr/lib/python3"* -path "$ROOTFS/usr/lib/python3/dist-packages/torch" -prune \
    -o -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true

PY_VERSION=$(chroot "$ROOTFS" python --version 2>&1 | awk '{print $2}')
DESCRIPTION="Debian $SUITE minbase + python $PY_VERSION${TORCH_VERSION:+ + torch $TORCH_VERSION (CPU only)} (debootstrap)"
log "python in rootfs: $PY_VERSION; importing as $BASE_IMAGE"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL org.opencontainers.image.description=\"$DESCRIPTION\"" \
    --change "LABEL org.opencontainers.image.base.name=\"debian:$SUITE (debootstrap from $MIRROR)\"" \
    - "$BASE_IMAGE"
rm -rf "$ROOTFS"
docker image inspect "$BASE_IMAGE" --format '{{.Id}} {{.Size}}' >&2
log "done: $BASE_IMAGE"
