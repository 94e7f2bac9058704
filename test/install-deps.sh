#!/usr/bin/env bash
# Installs the Debian packages `make test` needs and the machine lacks
# (`make test` runs this first; the test cluster installs its own):
# gcc + libc6-dev for the static C fixture (test/fixtures/notgo), debootstrap
# for the Debian root file system the Python and Node.js images take files
# from (images/debian), python3 and gdb for the runtimes and agent unit
# tests, npm to fetch Node.js and js-debug (images/node), ss (iproute2) to cut
# a port-forward's connections in the Node.js fault test; Debian's JDK 17
# (javac, jlink, jdb, jfr) and the Gson and Commons Lang jars for the Java
# images and tests (images/java, test/fixtures); for the VS Code
# extension Node.js and npm, the headers code-server's native modules build
# against, and Chromium for the real-VS-Code test. Debian's docker-registry
# (CNCF distribution) for the e2e tests' real registry is unpacked, not
# installed, into ~/.cache/kdap/docker-registry: installing would start it
# as a system service listening on every address.
set -euo pipefail
missing=""
for cmd in zip:zip unzip:unzip gcc:gcc gdb:gdb debootstrap:debootstrap python3:python3 node:nodejs npm:npm ss:iproute2 chromium:chromium; do
  command -v "${cmd%%:*}" >/dev/null || missing="$missing ${cmd##*:}"
done
for file in /usr/lib/jvm/java-17-openjdk-amd64/bin/jlink:openjdk-17-jdk-headless /usr/share/java/gson.jar:libgoogle-gson-java /usr/share/java/commons-lang3.jar:libcommons-lang3-java; do
  [ -e "${file%%:*}" ] || missing="$missing ${file##*:}"
done
for pkg in libc6-dev libkrb5-dev libxkbfile-dev libsecret-1-dev libx11-dev pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing Debian packages:$missing — run as root, or: sudo apt-get install$missing" >&2
    exit 1
  fi
  echo "install-deps: apt-get install$missing" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi

registry="${HOME}/.cache/kdap/docker-registry"
if [ ! -x "$registry/usr/bin/docker-registry" ]; then
  echo "install-deps: unpacking Debian's docker-registry into $registry" >&2
  tmp=$(mktemp -d)
  (cd "$tmp" && chmod 777 . && { apt-get download -qq docker-registry 2>/dev/null || { apt-get update -qq && apt-get download -qq docker-registry; }; })
  mkdir -p "$registry.tmp" && dpkg-deb -x "$tmp"/docker-registry_*.deb "$registry.tmp"
  rm -rf "$tmp" "$registry" && mv "$registry.tmp" "$registry"
fi
