#!/usr/bin/env bash
# Builds what a kdap release publishes, into DIST (default dist/):
#   kdap_VERSION_OS_ARCH.tar.gz (.zip for Windows) for linux, darwin and
#   windows × amd64 and arm64, each holding kdap, kubectl-kdap and
#   kubectl_complete-kdap (kubectl's plugin names), README.md;
#   kdap-VERSION.vsix (the VS Code extension); kdap.yaml (the krew
#   manifest, with the archives' checksums); checksums.txt (SHA-256).
# The binaries name the debugger images of VERSION (runtimes.Version);
# `make images REPOSITORY=ghcr.io/kdap TAG=VERSION` publishes those.
# Usage: release/build.sh VERSION [DIST]     (VERSION like v1.2.3)
set -euo pipefail
VERSION=${1:?usage: release/build.sh VERSION [DIST]}
[[ $VERSION =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$ ]] || { echo "release: VERSION $VERSION is not like v1.2.3" >&2; exit 2; }
cd "$(dirname "$0")/.."
DIST=$(realpath -m "${2:-dist}")
rm -rf "$DIST" && mkdir -p "$DIST"
work=$(mktemp -d) && trap 'rm -rf "$work"' EXIT
ldflags="-s -w -X github.com/kdap/kdap/runtimes.Version=$VERSION"
for target in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64; do
  os=${target%/*} arch=${target#*/} ext=""
  [ "$os" = windows ] && ext=.exe
  dir="$work/kdap_${VERSION}_${os}_${arch}"
  mkdir -p "$dir"
  echo "release: kdap $VERSION for $os/$arch" >&2
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -ldflags "$ldflags" -o "$dir/kdap$ext" ./cmd/kdap
  cp "$dir/kdap$ext" "$dir/kubectl-kdap$ext"
  cp "$dir/kdap$ext" "$dir/kubectl_complete-kdap$ext"
  cp README.md "$dir/"
  if [ "$os" = windows ]; then
    (cd "$work" && zip -qr "$DIST/$(basename "$dir").zip" "$(basename "$dir")")
  else
    tar -C "$work" -czf "$DIST/$(basename "$dir").tar.gz" "$(basename "$dir")"
  fi
done

echo "release: the VS Code extension" >&2
cp vscode-extension/package.json "$work/package.json"
restore() { cp "$work/package.json" vscode-extension/package.json; rm -rf "$work"; }
trap restore EXIT
(cd vscode-extension && npm ci --no-audit --no-fund >/dev/null && npm pkg set version="${VERSION#v}" && npm run package >/dev/null)
mv vscode-extension/kdap.vsix "$DIST/kdap-$VERSION.vsix"

echo "release: krew manifest" >&2
sha() { sha256sum "$DIST/$1" | cut -d' ' -f1; }
{
  cat <<YAML
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: kdap
spec:
  version: $VERSION
  homepage: https://github.com/kdap/kdap
  shortDescription: Step-debug a process already running in a pod
  description: |
    kdap attaches your IDE's debugger (VS Code, GoLand, IntelliJ, nvim-dap) to a
    process already running in a pod: no restart, no image change. It adds a
    debugger as an ephemeral container (Delve, debugpy, js-debug, java-debug),
    port-forwards to it and relays DAP; stack dumps, profiles and heap dumps
    without stopping the process. Try: kubectl kdap targets -A
  platforms:
YAML
  for target in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64; do
    os=${target%/*} arch=${target#*/} ext="" archive=tar.gz
    [ "$os" = windows ] && ext=.exe archive=zip
    name="kdap_${VERSION}_${os}_${arch}"
    cat <<YAML
  - selector:
      matchLabels:
        os: $os
        arch: $arch
    uri: https://github.com/kdap/kdap/releases/download/$VERSION/$name.$archive
    sha256: $(sha "$name.$archive")
    files:
    - from: $name/kubectl-kdap$ext
      to: .
    - from: $name/kubectl_complete-kdap$ext
      to: .
    - from: $name/README.md
      to: .
    bin: kubectl-kdap$ext
YAML
  done
} > "$DIST/kdap.yaml"

(cd "$DIST" && sha256sum -- *.tar.gz *.zip *.vsix kdap.yaml > checksums.txt)
echo "release: $(ls "$DIST" | wc -l) files in $DIST" >&2
