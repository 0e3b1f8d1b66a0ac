#!/usr/bin/env bash
# Builds the Kubernetes peers the tests run against, from the Go module proxy,
# once per machine: kube-apiserver and kubectl (k8s.io/kubernetes, module
# hack/kubebin), etcd (go.etcd.io/etcd/server/v3, hack/etcdbin) and helm
# (helm.sh/helm/v4, hack/helmbin). The versions are the ones those modules
# require. Each lands in a versioned directory of the tools cache
# (OUTPOST_TOOLS_CACHE, default ~/.cache/outpost/tools), so every clone and
# worktree on the machine reuses it; one that is present is never rebuilt, and
# the missing ones build side by side. Prints the environment the tests read,
# for eval: KUBEBUILDER_ASSETS (kube-apiserver and etcd, as envtest wants),
# OUTPOST_KUBECTL and OUTPOST_HELM.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
hack="$root/hack"
cache="${OUTPOST_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/outpost/tools}"

# required prints the version of module $2 that the build module in $1 requires.
required() {
	local v
	v="$(awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1/go.mod")"
	[[ -n "$v" ]] || { echo "kube.sh: $1/go.mod does not require $2" >&2; exit 1; }
	echo "$v"
}

kube_version="$(required "$hack/kubebin" k8s.io/kubernetes)"
etcd_version="$(required "$hack/etcdbin" go.etcd.io/etcd/server/v3)"
helm_version="$(required "$hack/helmbin" helm.sh/helm/v4)"

kube_dir="$cache/kube-$kube_version"
etcd_dir="$cache/etcd-$etcd_version"
helm_dir="$cache/helm-$helm_version"
assets="$cache/envtest-kube-$kube_version-etcd-$etcd_version"
mkdir -p "$cache"

# build DIR MODULE_DIR LDFLAGS NAME=PACKAGE... builds each missing NAME from
# PACKAGE of the module in MODULE_DIR into DIR. A lock per DIR makes a second
# caller wait for the first instead of building again; binaries go in under a
# temporary name and are renamed, so a half-written one is never taken.
build() {
	local dir="$1" mod="$2" ldflags="$3"
	shift 3
	mkdir -p "$dir"
	exec {lock}>"$dir/.lock"
	flock "$lock"
	local spec name pkg
	for spec in "$@"; do
		name="${spec%%=*}" pkg="${spec#*=}"
		[[ -x "$dir/$name" ]] && continue
		echo "kube.sh: building $name into $dir (once per machine; kube-apiserver takes minutes)" >&2
		(cd "$mod" && GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" \
			-o "$dir/.$name.tmp" "$pkg") >&2
		mv -f "$dir/.$name.tmp" "$dir/$name"
	done
	exec {lock}>&-
}

# The version kube-apiserver and kubectl report, as Kubernetes' own release build stamps it.
minor="${kube_version#v1.}"
minor="${minor%%.*}"
kube_ldflags=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	kube_ldflags+=" -X $p.gitVersion=$kube_version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done

pids=()
build "$kube_dir" "$hack/kubebin" "$kube_ldflags" \
	kube-apiserver=./kube-apiserver kubectl=./kubectl &
pids+=($!)
build "$etcd_dir" "$hack/etcdbin" "" etcd=. &
pids+=($!)
build "$helm_dir" "$hack/helmbin" "-X helm.sh/helm/v4/internal/version.version=$helm_version" \
	helm=helm.sh/helm/v4/cmd/helm &
pids+=($!)
failed=0
for pid in "${pids[@]}"; do
	wait "$pid" || failed=1
done
if ((failed)); then
	echo "kube.sh: a build failed (see above)" >&2
	exit 1
fi

# envtest takes one directory holding both kube-apiserver and etcd.
mkdir -p "$assets"
ln -sfn "$kube_dir/kube-apiserver" "$assets/kube-apiserver"
ln -sfn "$etcd_dir/etcd" "$assets/etcd"
ln -sfn "$kube_dir/kubectl" "$assets/kubectl"

echo "export KUBEBUILDER_ASSETS=$assets"
echo "export OUTPOST_KUBECTL=$kube_dir/kubectl"
echo "export OUTPOST_HELM=$helm_dir/helm"
