#!/usr/bin/env bash
# Set up cloudlet on a fresh Debian 12 machine and run the site daemon with its embedded default
# configuration: install dependencies, build the console and the binary, then `cloudlet serve`
# (HTTPS on :8443, the local socket /run/cloudlet/cloudlet.sock, state in /var/lib/cloudlet).
# On first start the daemon prints the console URL, the admin API token and the console password.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh
(cd web-ui && npm run build --silent)
cargo build --release --locked
install -m 0755 "${CARGO_TARGET_DIR:-target}/release/cloudlet" /usr/local/bin/cloudlet
DATA="${CLOUDLET_DATA_DIR:-/var/lib/cloudlet}"
if [ -f "$DATA/admin.token" ]; then
  echo "cloudlet: existing site in $DATA; the admin token is in $DATA/admin.token," \
       "the console password (user admin) in $DATA/admin.password"
fi
exec /usr/local/bin/cloudlet serve "$@"
