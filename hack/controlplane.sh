#!/usr/bin/env bash
# Provisions kube-apiserver, etcd, kubectl and kube-controller-manager (for
# the tests that need Deployments and Jobs to make Pods) for envtest and `make run`
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

say() { printf 'controlplane: %s\n' "$*" >&2; }

# Each binary is stamped with its version, so adding one to the list builds
# only that one.
declare -A version=(
	[etcd]=v${ETCD_VERSION}
	[kube-apiserver]=v${K8S_VERSION}
	[kubectl]=v${K8S_VERSION}
	[kube-controller-manager]=v${K8S_VERSION}
)
order=(etcd kube-apiserver kubectl kube-controller-manager)

missing() {
	local out=() b
	for b in "${order[@]}"; do
		if [[ ! -x "$dest/$b" || "$(cat "$dest/.kubekms-stamp-$b" 2>/dev/null)" != "${version[$b]}" ]]; then
			out+=("$b")
		fi
	done
	echo "${out[@]}"
}

todo=$(missing)
if [[ -z "$todo" ]]; then
	echo "$dest"
	exit 0
fi

mkdir -p "$dest"
exec 9>"$dest/.lock"
if ! flock -n 9; then
	say "another build is running; waiting for it"
	flock 9
	todo=$(missing)
	if [[ -z "$todo" ]]; then
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

say "building into $dest: $todo"
say "the first build compiles kube-apiserver and kube-controller-manager from source and takes 10 to 15 minutes on 2 cores; later runs reuse them"
start=$SECONDS
export CGO_ENABLED=0 GOFLAGS=-mod=mod

for b in $todo; do
	say "$b ${version[$b]}"
	case $b in
	etcd) (cd "$here/controlplane/etcd" && go build -trimpath -ldflags "-s -w" -o "$tmp/$b" go.etcd.io/etcd/server/v3) ;;
	*) (cd "$here/controlplane/kubernetes" && go build -trimpath -ldflags "$ldflags" -o "$tmp/$b" "k8s.io/kubernetes/cmd/$b") ;;
	esac
	mv -f "$tmp/$b" "$dest/$b"
	echo "${version[$b]}" >"$dest/.kubekms-stamp-$b"
done
say "done in $((SECONDS - start))s"
echo "$dest"
