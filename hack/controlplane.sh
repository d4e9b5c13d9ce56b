#!/usr/bin/env bash
# Provisions kube-apiserver, etcd and kubectl for envtest and `make run`
# without downloading prebuilt binaries: they are built from the Go module
# proxy at pinned versions (see hack/controlplane/*/go.mod) and installed where
# setup-envtest keeps its binaries, so either path finds them.
#
# Prints the directory to use as KUBEBUILDER_ASSETS on stdout; progress goes
# to stderr. A second run finds the stamped binaries and returns at once.
set -euo pipefail

K8S_VERSION=1.37.2
ETCD_VERSION=3.6.16

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
os=$(go env GOOS)
arch=$(go env GOARCH)
store=${ENVTEST_STORE:-${XDG_DATA_HOME:-$HOME/.local/share}/kubebuilder-envtest}
dest="$store/k8s/${K8S_VERSION}-${os}-${arch}"
stamp="$dest/.kubekms-stamp"
want="kube-apiserver=v${K8S_VERSION} etcd=v${ETCD_VERSION} kubectl=v${K8S_VERSION}"

say() { printf 'controlplane: %s\n' "$*" >&2; }

if [[ -x "$dest/kube-apiserver" && -x "$dest/etcd" && -x "$dest/kubectl" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
	echo "$dest"
	exit 0
fi

mkdir -p "$dest"
lock="$dest/.lock"
exec 9>"$lock"
if ! flock -n 9; then
	say "another build is running; waiting for it"
	flock 9
	if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
		echo "$dest"
		exit 0
	fi
fi

tmp=$(mktemp -d "$dest/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

ver="k8s.io/component-base/version"
ldflags="-s -w -X ${ver}.gitVersion=v${K8S_VERSION} -X ${ver}.gitMajor=${K8S_VERSION%%.*}"
minor=${K8S_VERSION#*.}
ldflags="$ldflags -X ${ver}.gitMinor=${minor%%.*} -X ${ver}.gitTreeState=clean"

say "building the local control plane into $dest"
say "the first build compiles kube-apiserver from source and takes about 10 minutes on 2 cores; later runs reuse it"
start=$SECONDS
export CGO_ENABLED=0 GOFLAGS=-mod=mod

say "[1/3] etcd v${ETCD_VERSION}"
(cd "$here/controlplane/etcd" && go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)

say "[2/3] kube-apiserver v${K8S_VERSION} (the long one)"
(cd "$here/controlplane/kubernetes" && go build -trimpath -ldflags "$ldflags" -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)

say "[3/3] kubectl v${K8S_VERSION}"
(cd "$here/controlplane/kubernetes" && go build -trimpath -ldflags "$ldflags" -o "$tmp/kubectl" k8s.io/kubernetes/cmd/kubectl)

mv -f "$tmp/etcd" "$tmp/kube-apiserver" "$tmp/kubectl" "$dest/"
echo "$want" >"$stamp"
say "done in $((SECONDS - start))s"
echo "$dest"
