#!/usr/bin/env bash
# Runs everything that checks portcullis: formatting, lints, unit tests and the end-to-end
# tests over real sockets. Installs the system packages the tests need when they are missing
# (Debian/Ubuntu, as root or through sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

# apt_install PACKAGE: apt-get, as root or through sudo.
apt_install() {
  echo "== installing $1"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$1" >/dev/null
}

# need PROGRAM PACKAGE: install PACKAGE when PROGRAM is not on PATH.
need() {
  command -v "$1" >/dev/null 2>&1 || apt_install "$2"
}

need curl curl
need python3 python3
need redis-server redis-server
need redis-cli redis-tools
need nginx nginx-light
# The browser tests (tests/browser.rs): Debian's Chromium, driven by Playwright from npm.
need chromium chromium
need node nodejs
need npm npm
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "== npm ci (tests/browser)"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
# The OpenID Connect tests' provider (tests/oidc/provider.mjs): node-oidc-provider from npm.
if [ ! -d tests/oidc/node_modules/oidc-provider ]; then
  echo "== npm ci (tests/oidc)"
  (cd tests/oidc && npm ci --no-audit --no-fund --loglevel=error)
fi

# The gRPC tests' independent client (tests/grpc/client.py): Python's grpcio from PyPI, in a
# virtualenv of its own under target/ (Debian's Python refuses system-wide pip installs).
if [ ! -x target/grpc-venv/bin/python ]; then
  echo "== python3 -m venv target/grpc-venv"
  if ! python3 -m venv target/grpc-venv >/dev/null 2>&1; then
    rm -rf target/grpc-venv
    apt_install python3-venv
    python3 -m venv target/grpc-venv
  fi
fi
if ! target/grpc-venv/bin/python -c 'import grpc, grpc_reflection, grpc_health' 2>/dev/null; then
  echo "== pip install grpcio grpcio-reflection grpcio-health-checking (target/grpc-venv)"
  target/grpc-venv/bin/python -m pip install --quiet grpcio grpcio-reflection grpcio-health-checking
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== import circles and file sizes (issue #15)"
python3 scripts/import_circles.py src
long=$(find src -name '*.rs' -exec awk 'END { if (NR > 600) print FILENAME ": " NR " lines" }' {} \;)
if [ -n "$long" ]; then
  echo "files in src/ over 600 lines:"; echo "$long"; exit 1
fi
echo "== cargo test"
cargo test --all-targets
