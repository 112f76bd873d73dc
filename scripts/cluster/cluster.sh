#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, with no registry and no release download.
#
#   scripts/cluster/cluster.sh up       build (once) and start every component, wait for a Ready node
#   scripts/cluster/cluster.sh down     stop everything this script started and remove the node's state
#   scripts/cluster/cluster.sh status   what runs, and where its log is
#   scripts/cluster/cluster.sh import IMAGE...   docker save | ctr import, skipped when containerd has that
#                                                image (same config digest as Docker's id); the repository's
#                                                other tags are removed from the node
#
# What runs, all as host processes (the way Kubernetes' own hack/local-up-cluster.sh does it):
#   containerd (Debian's, a second instance with its CRI plugin on, beside dockerd's), etcd,
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy (iptables mode).
# Binaries: scripts/cluster/build-k8s.sh (Go module proxy, cached by version). Pods get their network from
# Debian's CNI plugins (bridge + host-local + portmap, 10.88.0.0/16, the host is 10.88.0.1); Services get
# ClusterIPs from 10.0.0.0/24 through kube-proxy. There is no cluster DNS: manifests name Services by
# their fixed ClusterIP. The pause image is compiled from the release's pause.c into a FROM-scratch image.
#
# Idempotent: `up` on a running cluster only checks it; `down` on a stopped one does nothing.
# State and logs: $CLUSTER_DIR (default $PIPELINE_HOME/cluster, i.e. .pipeline/cluster):
#   logs/<component>.log  run/<component>.pid  pki/  kubeconfig  (and the node's data under $NODE_ROOT)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PIPELINE_HOME="${PIPELINE_HOME:-$REPO/.pipeline}"
CLUSTER_DIR="${CLUSTER_DIR:-$PIPELINE_HOME/cluster}"
NODE_ROOT="${NODE_ROOT:-/var/lib/genai-pipeline-node}"
NODE_NAME="${NODE_NAME:-genai-node}"
SERVICE_CIDR=10.0.0.0/24
POD_CIDR=10.88.0.0/16
PAUSE_IMAGE="registry.k8s.io/pause:3.10"
CONTAINERD_SOCK=/run/genai-pipeline/containerd/containerd.sock
LOGS="$CLUSTER_DIR/logs"
RUN="$CLUSTER_DIR/run"
PKI="$CLUSTER_DIR/pki"
KUBECONFIG_FILE="$CLUSTER_DIR/kubeconfig"

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

node_ip() {
    # The address of the interface that holds the default route: the API server advertises it.
    ip -4 route get 1.1.1.1 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "src") print $(i + 1)}' | head -n1
}

# write_file FILE: stdin into FILE, only when it differs. kube-proxy exits when its config file changes at
# all, so a second `up` must leave the files of running components alone.
write_file() {
    local tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

running() { [[ -f "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# start NAME COMMAND...: run in the background, log to logs/NAME.log, remember the pid.
start() {
    local name=$1
    shift
    if running "$name"; then
        return 0
    fi
    log "starting $name (log: $LOGS/$name.log)"
    nohup "$@" >>"$LOGS/$name.log" 2>&1 &
    echo $! >"$RUN/$name.pid"
}

# wait_for WHAT SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
    local what=$1 seconds=$2
    shift 2
    for _ in $(seq 1 "$seconds"); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 1
    done
    die "$what not ready after ${seconds}s (logs: $LOGS)"
}

install_packages() {
    local missing=()
    command -v containerd >/dev/null || missing+=(containerd)
    command -v runc >/dev/null || missing+=(runc)
    [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
    command -v iptables >/dev/null || missing+=(iptables)
    command -v conntrack >/dev/null || missing+=(conntrack)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v curl >/dev/null || missing+=(curl)
    command -v ip >/dev/null || missing+=(iproute2)
    command -v modprobe >/dev/null || missing+=(kmod)
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "installing ${missing[*]} from Debian"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

prepare_node() {
    # Volumes mounted by the kubelet must propagate into containers.
    mount --make-rshared / 2>/dev/null || true
    modprobe br_netfilter 2>/dev/null || true
    sysctl -qw net.ipv4.ip_forward=1
    sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || log "bridge-nf-call-iptables unavailable"
    # dockerd sets FORWARD to DROP whenever it starts; pod traffic (bridged pod-to-pod through a Service
    # included, with br_netfilter) must pass whatever the policy, so accept the pod network explicitly.
    local rule
    for rule in "-s $POD_CIDR" "-d $POD_CIDR"; do
        # shellcheck disable=SC2086  # rule is two words
        iptables -C FORWARD $rule -j ACCEPT 2>/dev/null || iptables -I FORWARD 1 $rule -j ACCEPT
    done
    mkdir -p /etc/cni/net.d
    write_file /etc/cni/net.d/10-genai-pipeline.conflist <<EOF
{
  "cniVersion": "1.0.0",
  "name": "genai-pipeline",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "10.88.0.1"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

make_certs() {
    [[ -f "$PKI/.complete" ]] && return 0
    log "creating certificates in $PKI"
    rm -rf "$PKI" && mkdir -p "$PKI"
    local ip
    ip=$(node_ip)
    (
        cd "$PKI"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=genai-pipeline-ca" \
            -keyout ca.key -out ca.crt 2>/dev/null
        # sign NAME SUBJECT [SANS]: a key and a certificate signed by the CA.
        sign() {
            local name=$1 subject=$2 sans=${3:-}
            openssl req -newkey rsa:2048 -nodes -subj "$subject" -keyout "$name.key" -out "$name.csr" 2>/dev/null
            if [[ -n "$sans" ]]; then
                printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$sans" >"$name.ext"
            else
                printf 'extendedKeyUsage=clientAuth\n' >"$name.ext"
            fi
            openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
                -extfile "$name.ext" -out "$name.crt" 2>/dev/null
            rm -f "$name.csr" "$name.ext"
        }
        sign apiserver "/CN=kube-apiserver" \
            "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.0.0.1,IP:$ip"
        sign admin "/O=system:masters/CN=admin"
        sign controller-manager "/CN=system:kube-controller-manager"
        sign scheduler "/CN=system:kube-scheduler"
        sign kube-proxy "/CN=system:kube-proxy"
        sign apiserver-kubelet-client "/CN=kube-apiserver"
        sign kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "DNS:$NODE_NAME,IP:127.0.0.1,IP:$ip"
        openssl genrsa -out service-account.key 2048 2>/dev/null
        openssl rsa -in service-account.key -pubout -out service-account.pub 2>/dev/null
    )
    for user in admin controller-manager scheduler kube-proxy kubelet; do
        kubeconfig_for "$user" >"$PKI/$user.kubeconfig"
    done
    cp "$PKI/admin.kubeconfig" "$KUBECONFIG_FILE"
    touch "$PKI/.complete"
}

kubeconfig_for() {
    local user=$1
    cat <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: genai-pipeline
    cluster: {server: "https://127.0.0.1:6443", certificate-authority: "$PKI/ca.crt"}
users:
  - name: $user
    user: {client-certificate: "$PKI/$user.crt", client-key: "$PKI/$user.key"}
contexts:
  - name: genai-pipeline
    context: {cluster: genai-pipeline, user: $user}
current-context: genai-pipeline
EOF
}

start_containerd() {
    local dir="$CLUSTER_DIR/containerd"
    mkdir -p "$dir" "$(dirname "$CONTAINERD_SOCK")"
    containerd config default | write_file "$dir/config.toml.default"
    # CRI on, Debian's CNI plugins, our pause image, cgroupfs, and restrict_oom_score_adj: root here lacks
    # CAP_SYS_RESOURCE, and without it runc fails every sandbox ("can't get final child's PID from pipe").
    python3 - "$dir/config.toml.default" "$NODE_ROOT" "$PAUSE_IMAGE" "$CONTAINERD_SOCK" <<'PY' | write_file "$dir/config.toml"
import re, sys
src, root, pause, sock = sys.argv[1:]
text = open(src).read()
text = re.sub(r'^root = .*$', f'root = "{root}/containerd"', text, flags=re.M)
text = re.sub(r'^state = .*$', f'state = "/run/genai-pipeline/containerd-state"', text, flags=re.M)
text = re.sub(r'(\[grpc\]\n(?:.*\n)*?\s*address = ).*', lambda m: m.group(1) + f'"{sock}"', text, count=1)
text = re.sub(r'(\[ttrpc\]\n(?:.*\n)*?\s*address = ).*', lambda m: m.group(1) + f'"{sock}.ttrpc"', text, count=1)
text = re.sub(r'(\[debug\]\n(?:.*\n)*?\s*address = ).*', lambda m: m.group(1) + '""', text, count=1)
text = re.sub(r'sandbox_image = .*', f'sandbox_image = "{pause}"', text)
text = re.sub(r'restrict_oom_score_adj = .*', 'restrict_oom_score_adj = true', text)
text = re.sub(r'bin_dir = .*', 'bin_dir = "/usr/lib/cni"', text)
text = re.sub(r'conf_dir = .*', 'conf_dir = "/etc/cni/net.d"', text)
text = re.sub(r'SystemdCgroup = .*', 'SystemdCgroup = false', text)
text = re.sub(r'disabled_plugins = .*', 'disabled_plugins = []', text)
sys.stdout.write(text)
PY
    start containerd containerd --config "$dir/config.toml"
    wait_for containerd 30 ctr -a "$CONTAINERD_SOCK" version
}

# node_has IMAGE ID: whether the node's containerd holds IMAGE (as docker.io/IMAGE) built from the same config
# as Docker's image ID. It asks the node itself, whose images outlive a `down` (KEEP_IMAGES=1), so the answer
# holds whichever checkout, PIPELINE_HOME or clean clone imports next. (A stamp under $PIPELINE_HOME did not:
# each new checkout or `make clean` lost it and the import ran again, though the node still had every image.)
node_has() {
    local digest document
    digest=$(ctr -a "$CONTAINERD_SOCK" -n k8s.io images ls "name==docker.io/$1" 2>/dev/null | awk 'NR == 2 { print $3 }')
    # The listed digest is the manifest's (Docker's own save), or an index's whose first manifest is the image.
    for _ in 1 2; do
        [[ -n "$digest" ]] || return 1
        document=$(ctr -a "$CONTAINERD_SOCK" -n k8s.io content get "$digest" 2>/dev/null) || return 1
        digest=$(python3 -c 'import json, sys
document = json.load(sys.stdin)
print(document["config"]["digest"] if "config" in document else "index " + document["manifests"][0]["digest"])' <<<"$document") || return 1
        [[ $digest == index\ * ]] || break
        digest=${digest#index }
    done
    [[ "$digest" == "$2" ]]
}

# import_images IMAGE...: docker save | ctr import into the k8s.io namespace, unless the node has that image.
import_images() {
    local image id
    for image in "$@"; do
        id=$(docker image inspect --format '{{.Id}}' "$image") || die "no local image $image"
        if node_has "$image" "$id"; then
            continue
        fi
        log "importing $image into the node's containerd"
        docker save "$image" | ctr -a "$CONTAINERD_SOCK" -n k8s.io images import --no-unpack=false - >/dev/null
        # The other tags of this repository: the node keeps its images across restarts, so without this every
        # build's tag stays on its disk. (A running container keeps its snapshot until it ends.)
        ctr -a "$CONTAINERD_SOCK" -n k8s.io images ls -q | grep "^docker.io/${image%:*}:" | grep -vxF "docker.io/$image" \
            | xargs -r ctr -a "$CONTAINERD_SOCK" -n k8s.io images rm --sync >/dev/null || true
    done
    # The CRI plugin also names every image it has seen by its id (sha256:<config digest>), and that name alone
    # keeps the image's content: remove the id names whose image has no other name left.
    ctr -a "$CONTAINERD_SOCK" -n k8s.io images ls | awk 'NR > 1 {
            ref[NR] = $1; target[NR] = $3; if ($1 !~ /^sha256:/) named[$3] = 1 }
        END { for (i in ref) if (ref[i] ~ /^sha256:/ && !(target[i] in named)) print ref[i] }' \
        | xargs -r ctr -a "$CONTAINERD_SOCK" -n k8s.io images rm --sync >/dev/null || true
}

pause_image() {
    if [[ -n "$(ctr -a "$CONTAINERD_SOCK" -n k8s.io images ls -q "name==$PAUSE_IMAGE")" ]]; then
        return 0
    fi
    local ctx
    ctx=$(mktemp -d)
    cp "$BIN/pause" "$ctx/pause"
    printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$ctx/Dockerfile"
    DOCKER_BUILDKIT=0 docker build -q -t "$PAUSE_IMAGE" "$ctx" >/dev/null
    rm -rf "$ctx"
    docker save "$PAUSE_IMAGE" | ctr -a "$CONTAINERD_SOCK" -n k8s.io images import - >/dev/null
}

start_control_plane() {
    local ip=$1
    mkdir -p "$NODE_ROOT/etcd"
    start etcd "$BIN/etcd" --name genai-node --data-dir "$NODE_ROOT/etcd" \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster genai-node=http://127.0.0.1:2380 --quota-backend-bytes 4294967296
    wait_for etcd 60 curl -sf http://127.0.0.1:2379/health

    start kube-apiserver "$BIN/kube-apiserver" \
        --etcd-servers=http://127.0.0.1:2379 --secure-port=6443 --bind-address=0.0.0.0 --advertise-address="$ip" \
        --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
        --client-ca-file="$PKI/ca.crt" \
        --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
        --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
        --kubelet-preferred-address-types=InternalIP \
        --service-account-issuer=https://kubernetes.default.svc \
        --service-account-key-file="$PKI/service-account.pub" \
        --service-account-signing-key-file="$PKI/service-account.key" \
        --service-cluster-ip-range="$SERVICE_CIDR" \
        --authorization-mode=Node,RBAC --allow-privileged=false \
        --enable-admission-plugins=NodeRestriction
    wait_for kube-apiserver 120 curl -sf --cacert "$PKI/ca.crt" https://127.0.0.1:6443/readyz
    # Logs and exec go from the API server to the kubelet as user kube-apiserver.
    kctl create clusterrolebinding kube-apiserver-kubelet-api-admin --clusterrole=system:kubelet-api-admin \
        --user=kube-apiserver --dry-run=client -o yaml | kctl apply -f - >/dev/null

    start kube-controller-manager "$BIN/kube-controller-manager" \
        --kubeconfig="$PKI/controller-manager.kubeconfig" --leader-elect=false \
        --use-service-account-credentials --service-account-private-key-file="$PKI/service-account.key" \
        --root-ca-file="$PKI/ca.crt" --cluster-signing-cert-file="$PKI/ca.crt" \
        --cluster-signing-key-file="$PKI/ca.key" --service-cluster-ip-range="$SERVICE_CIDR"
    start kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$PKI/scheduler.kubeconfig" --leader-elect=false
}

start_node() {
    local ip=$1
    mkdir -p "$NODE_ROOT/kubelet"
    write_file "$CLUSTER_DIR/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
failSwapOn: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$PKI/kubelet.crt"
tlsPrivateKeyFile: "$PKI/kubelet.key"
# A build machine's disk is shared with image builds: never evict or garbage-collect images for disk.
evictionHard: {memory.available: "200Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
serializeImagePulls: false
maxPods: 110
EOF
    start kubelet "$BIN/kubelet" --config="$CLUSTER_DIR/kubelet-config.yaml" \
        --kubeconfig="$PKI/kubelet.kubeconfig" --root-dir="$NODE_ROOT/kubelet" \
        --hostname-override="$NODE_NAME" --node-ip="$ip"
    write_file "$CLUSTER_DIR/kube-proxy-config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$PKI/kube-proxy.kubeconfig"}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
# Leave the host's conntrack table sizes alone (a sandbox may not allow changing them).
conntrack: {maxPerCore: 0, min: 0}
EOF
    start kube-proxy "$BIN/kube-proxy" --config="$CLUSTER_DIR/kube-proxy-config.yaml"
    wait_for "node $NODE_NAME" 120 node_ready
    wait_for "default service account" 60 kctl get serviceaccount default -n default
}

node_ready() {
    [[ "$(kctl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

kctl() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

cmd_up() {
    [[ $(id -u) == 0 ]] || die "the node's components need root"
    local started=$SECONDS ip
    mkdir -p "$LOGS" "$RUN"
    install_packages
    # Docker first (it builds the pause image): starting dockerd resets iptables' FORWARD policy to DROP.
    bash "$REPO/scripts/ensure-docker.sh"
    BIN="$(bash "$REPO/scripts/cluster/build-k8s.sh")/bin"
    echo "$BIN" >"$RUN/bin"
    ip=$(node_ip)
    [[ -n "$ip" ]] || die "no default route: cannot tell the node address"
    prepare_node
    make_certs
    start_containerd
    pause_image
    start_control_plane "$ip"
    start_node "$ip"
    log "node $NODE_NAME Ready ($("$BIN/kubectl" version --kubeconfig "$KUBECONFIG_FILE" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')) in $((SECONDS - started)) s"
    log "export KUBECONFIG=$KUBECONFIG_FILE   (kubectl: $BIN/kubectl)"
}

cmd_down() {
    local name pid
    # Pods first (their containers belong to containerd's shims), then the node, then the control plane.
    for name in kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver etcd; do
        if running "$name"; then
            pid=$(cat "$RUN/$name.pid")
            log "stopping $name ($pid)"
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$RUN/$name.pid"
    done
    if running containerd; then
        # Every pod's containers: their shims are children of nobody once containerd goes.
        local c="ctr -a $CONTAINERD_SOCK -n k8s.io"
        $c tasks ls -q 2>/dev/null | while read -r task; do $c tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true; done
        sleep 1
        # Containers (pod sandboxes included) leave containerd's metadata, so a warm start begins with none.
        $c tasks ls -q 2>/dev/null | while read -r task; do $c tasks delete -f "$task" >/dev/null 2>&1 || true; done
        $c containers ls -q 2>/dev/null | while read -r ctn; do $c containers rm "$ctn" >/dev/null 2>&1 || true; done
        kill "$(cat "$RUN/containerd.pid")" 2>/dev/null || true
        sleep 1
    fi
    rm -f "$RUN/containerd.pid"
    pkill -9 -f "containerd-shim.*-address $CONTAINERD_SOCK" 2>/dev/null || true
    # kube-proxy's rules and the pod bridge, so the next start begins clean.
    # (grep without -q: with pipefail, -q's early exit would SIGPIPE iptables-save and fail the test)
    if [[ $(iptables-save 2>/dev/null | grep -c KUBE- || true) -gt 0 ]]; then
        iptables-save | grep -v KUBE- | iptables-restore || log "could not remove kube-proxy's iptables rules"
    fi
    ip link delete cni0 2>/dev/null || true
    # Mounts the kubelet and containerd left (secrets, projected tokens, rootfs), then the state.
    { grep -oE " ($NODE_ROOT|/run/genai-pipeline)[^ ]*" /proc/mounts || true; } | sort -r | while read -r mnt; do
        umount -l "$mnt" 2>/dev/null || true
    done
    if [[ "${KEEP_IMAGES:-1}" == 1 && -d "$NODE_ROOT/containerd" ]]; then
        # Imported images stay (a warm start skips the import); everything else goes.
        rm -rf "$NODE_ROOT/etcd" "$NODE_ROOT/kubelet" /var/lib/cni/networks/genai-pipeline
    else
        rm -rf "$NODE_ROOT" /var/lib/cni/networks/genai-pipeline
    fi
    rm -rf /run/genai-pipeline/containerd-state
    log "cluster stopped (logs kept in $LOGS)"
}

cmd_status() {
    local name
    for name in containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
        if running "$name"; then
            printf '%-24s running (pid %s)  %s\n' "$name" "$(cat "$RUN/$name.pid")" "$LOGS/$name.log"
        else
            printf '%-24s stopped\n' "$name"
        fi
    done
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    import)
        shift
        import_images "$@"
        ;;
    *)
        echo "usage: $0 up|down|status|import IMAGE..." >&2
        exit 2
        ;;
esac
