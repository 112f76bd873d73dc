#!/usr/bin/env bash
# Build the step images' base without any container registry: a Debian bookworm minbase root
# filesystem made with debootstrap from the Debian mirror apt already uses, imported with
# `docker import` as genai-pipeline/base:bookworm.
#
# What is in it: bash (minbase), python3 (3.11) with venv/ensurepip, ca-certificates, and a
# `python` -> python3 symlink (Airflow's @task.kubernetes runs the literal `python` and `bash`).
#
# Idempotent: does nothing when the image already exists (FORCE=1 rebuilds it).
#
# Environment:
#   BASE_IMAGE   tag to create              (default genai-pipeline/base:bookworm)
#   MIRROR       Debian mirror URL          (default: the first URIs/deb line of apt's own sources)
#   SUITE        Debian suite               (default bookworm)
#   WORK_DIR     where the rootfs is built  (default /var/tmp/genai-pipeline-base)
#   FORCE=1      rebuild even if the image exists
#   UPGRADE=0    skip applying bookworm-updates / bookworm-security inside the rootfs
set -euo pipefail

BASE_IMAGE="${BASE_IMAGE:-genai-pipeline/base:bookworm}"
SUITE="${SUITE:-bookworm}"
WORK_DIR="${WORK_DIR:-/var/tmp/genai-pipeline-base}"
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

if [[ "$UPGRADE" == 1 ]]; then
    log "applying $SUITE-updates and $SUITE-security"
    cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf" 2>/dev/null || true
    chroot "$ROOTFS" /usr/bin/env DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        bash -c 'apt-get update -qq && apt-get -y -qq -o Dpkg::Options::=--force-confold upgrade'
    : >"$ROOTFS/etc/resolv.conf"
fi

# The step decorator runs the literal `python`.
ln -sf python3 "$ROOTFS/usr/bin/python"

# Shrink: package caches and lists, docs, man pages, non-English locales, byte-code caches.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/lib/apt/lists/* \
    "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/* \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*
find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
find "$ROOTFS/usr/lib/python3"* -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true

PY_VERSION=$(chroot "$ROOTFS" python --version 2>&1 | awk '{print $2}')
log "python in rootfs: $PY_VERSION; importing as $BASE_IMAGE"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL org.opencontainers.image.description=\"Debian $SUITE minbase + python $PY_VERSION (debootstrap)\"" \
    --change "LABEL org.opencontainers.image.base.name=\"debian:$SUITE (debootstrap from $MIRROR)\"" \
    - "$BASE_IMAGE"
rm -rf "$ROOTFS"
docker image inspect "$BASE_IMAGE" --format '{{.Id}} {{.Size}}' >&2
log "done: $BASE_IMAGE"
