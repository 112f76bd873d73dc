#!/usr/bin/env bash
# Build the Kubernetes node binaries from the Go module proxy, once per version, into a cache:
#
#   kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl   (k8s.io/kubernetes)
#   etcd                                                                                (go.etcd.io/etcd/server/v3)
#   pause                                                                               (build/pause/linux/pause.c, static)
#
# No release download and no registry: `go mod download` fetches the kubernetes module's source, which
# is copied, made writable, stripped of vendor/ and go.work, and has every `k8s.io/X => ./staging/...`
# replace pointed at the published k8s.io/X at the matching v0.MINOR.PATCH. Only the cmd packages are
# built (downloading the whole module graph fails: k8s.io/sample-cli-plugin is not served). Version
# ldflags are set, or /version says v0.0.0 and helm's kubeVersion checks fail.
#
# Idempotent: a complete cache directory is reused as it is (a warm start costs nothing).
# Usage: scripts/cluster/build-k8s.sh            prints the cache directory on stdout
# Environment: K8S_VERSION (v1.34.4)  ETCD_VERSION (v3.6.16)  CACHE_DIR (~/.cache/genai-pipeline)
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE_DIR="${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/genai-pipeline}"
OUT="$CACHE_DIR/k8s-$K8S_VERSION"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

log() { printf '[build-k8s] %s\n' "$*" >&2; }

complete() {
    local b
    for b in "${BINARIES[@]}" etcd pause; do [[ -x "$OUT/bin/$b" ]] || return 1; done
}
if complete; then
    echo "$OUT"
    exit 0
fi
command -v go >/dev/null || { log "go is required to build Kubernetes $K8S_VERSION"; exit 1; }
command -v gcc >/dev/null || { log "gcc is required to build the pause binary"; exit 1; }
mkdir -p "$OUT/bin"
export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local

# 1. The kubernetes source, as a writable module of its own.
SRC="$OUT/src"
if [[ ! -f "$SRC/.prepared" ]]; then
    log "downloading k8s.io/kubernetes@$K8S_VERSION source"
    dir=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    rm -rf "$SRC" && cp -r "$dir" "$SRC" && chmod -R u+w "$SRC"
    rm -rf "$SRC/vendor" "$SRC"/go.work*
    staging_version="v0.${K8S_VERSION#v1.}"
    # Every staging replace -> the published module of the same release (read from go.mod, not hard-coded).
    edits=$(cd "$SRC" && go mod edit -json | python3 -c '
import json, sys
mod = json.load(sys.stdin)
for r in mod.get("Replace") or []:
    if r["New"]["Path"].startswith("./staging/src/"):
        old = r["Old"]["Path"]
        print(f"-replace={old}={old}@'"$staging_version"'")
')
    # shellcheck disable=SC2086  # one flag per line
    (cd "$SRC" && go mod edit $edits)
    touch "$SRC/.prepared"
fi

# 2. The node binaries, with the release version stamped in.
commit=$(date -u +%Y%m%d)
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitCommit=module-proxy-$commit -X $pkg.gitTreeState=clean"
    ldflags+=" -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
done
for b in "${BINARIES[@]}"; do
    [[ -x "$OUT/bin/$b" ]] && continue
    log "go build ./cmd/$b"
    start=$SECONDS
    (cd "$SRC" && go build -trimpath -ldflags "-s -w $ldflags" -o "$OUT/bin/$b.new" "./cmd/$b")
    mv "$OUT/bin/$b.new" "$OUT/bin/$b"
    log "$b built in $((SECONDS - start)) s"
done

# 3. etcd: `go install` refuses its local replaces, so build it from a throwaway wrapper module.
if [[ ! -x "$OUT/bin/etcd" ]]; then
    log "building etcd $ETCD_VERSION"
    wrap=$(mktemp -d)
    (cd "$wrap" && go mod init etcd-build >/dev/null 2>&1 && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1 \
        && go build -trimpath -ldflags "-s -w" -o "$OUT/bin/etcd" go.etcd.io/etcd/server/v3)
    rm -rf "$wrap"
fi

# 4. The pod sandbox's pause process, static, from the same release.
if [[ ! -x "$OUT/bin/pause" ]]; then
    log "compiling pause"
    gcc -Os -static -DVERSION="\"$K8S_VERSION\"" -o "$OUT/bin/pause" "$SRC/build/pause/linux/pause.c"
    strip "$OUT/bin/pause" || true
fi
complete
log "binaries in $OUT/bin"
echo "$OUT"
