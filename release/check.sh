#!/usr/bin/env bash
# The release's build part, dry (make test runs it as release-check): lints
# the release workflow (actionlint), runs release/build.sh for v0.0.1 into a
# temporary directory and checks what it made: every archive and its
# checksum, each binary's format for its platform, the kubectl plugin names,
# the version and image tag the Linux binary reports, the .vsix, and the
# krew manifest (krew's own validator).
set -euo pipefail
cd "$(dirname "$0")/.."
go run github.com/rhysd/actionlint/cmd/actionlint@v1.7.12 .github/workflows/release.yml
dist=$(mktemp -d) && trap 'rm -rf "$dist"' EXIT
start=$(date +%s)
release/build.sh v0.0.1 "$dist"
fail() { echo "release-check: $*" >&2; exit 1; }
(cd "$dist" && sha256sum --quiet -c checksums.txt) || fail "checksums.txt does not match"
magic() { head -c 4 "$1" | od -An -tx1 | tr -d ' \n'; }
for target in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64; do
  os=${target%/*} arch=${target#*/} name="kdap_v0.0.1_${os}_${arch}" ext=""
  x="$dist/x/$name" && mkdir -p "$dist/x"
  if [ "$os" = windows ]; then
    ext=.exe && unzip -q "$dist/$name.zip" -d "$dist/x"
  else
    tar -C "$dist/x" -xzf "$dist/$name.tar.gz"
  fi
  for f in kdap kubectl-kdap kubectl_complete-kdap; do [ -f "$x/$f$ext" ] || fail "$name lacks $f$ext"; done
  case $os in
    linux) want=7f454c46 ;;   # ELF
    darwin) want=cffaedfe ;;  # Mach-O 64-bit
    windows) want=4d5a ;;     # MZ
  esac
  got=$(magic "$x/kdap$ext")
  [[ $got == $want* ]] || fail "$name/kdap$ext starts with $got, not a $os executable"
done
linux="$dist/x/kdap_v0.0.1_linux_$(go env GOARCH)/kdap"
[ "$("$linux" version)" = "kdap v0.0.1" ] || fail "kdap version says $("$linux" version), want kdap v0.0.1"
# (each output is read whole before grep: grep -q leaving early would fail the pipe)
runtimes=$("$linux" runtimes)
grep -q 'ghcr.io/kdap/kdap-go:v0.0.1' <<<"$runtimes" || fail "the release does not name the debugger images of its version: $runtimes"
vsix=$(unzip -l "$dist/kdap-v0.0.1.vsix")
grep -q 'extension/dist/extension.js' <<<"$vsix" || fail "the .vsix holds no extension"
manifest=$(unzip -p "$dist/kdap-v0.0.1.vsix" extension/package.json)
grep -q '"version": "0.0.1"' <<<"$manifest" || fail "the .vsix is not version 0.0.1"
go run sigs.k8s.io/krew/cmd/validate-krew-manifest@v0.4.3 -manifest "$dist/kdap.yaml" -skip-install
echo "release-check: $(ls "$dist" | grep -vc '^x$') release files built and checked in $(( $(date +%s) - start )) s" >&2
