#!/usr/bin/env bash
# Regenerates go.mod/go.sum of the wrapper module for Kubernetes version $1
# (e.g. 1.36.3): one replace per staging module that k8s.io/kubernetes' own
# go.mod points at ./staging, each pinned to the matching v0.X.Y release.
set -euo pipefail
V=${1:?usage: gen.sh 1.36.3}
cd "$(dirname "$0")"
proxy=$(go env GOPROXY | cut -d, -f1)
mod=$(curl -fsSL "$proxy/k8s.io/kubernetes/@v/v$V.mod")
{
  echo "// Module kubernetes pins the Kubernetes components the test cluster runs."
  echo "// It is separate from kdap's module because k8s.io/kubernetes needs a replace"
  echo "// for every staging module; regenerate with test/cluster/kubernetes/gen.sh."
  echo "module github.com/kdap/kdap/test/cluster/kubernetes"
  echo
  echo "go $(awk '$1=="go"{print $2}' <<<"$mod")"
  echo
  echo "require k8s.io/kubernetes v$V"
  echo
  echo "replace ("
  awk -v v="v0.${V#1.}" '$2=="=>" && $3 ~ /^\.\/staging\// {print "\t"$1" => "$1" "v}' <<<"$mod"
  echo ")"
} > go.mod
rm -f go.sum
go list -mod=mod -deps k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubelet > /dev/null
echo "kubernetes v$V pinned in $(pwd)/go.mod"
