#!/usr/bin/env bash
# Property-based fuzzing of the REST API from its own OpenAPI document with Schemathesis: every
# operation, coverage + fuzzing + stateful phases, checking that no generated request gets a 5xx.
# Starts the real daemon on a temp dir and an ephemeral loopback port.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${CLOUDLET_BIN:-target/release/cloudlet}"
DATA="$(mktemp -d)"
# Pulls may only name a registry on a loopback port that nothing serves, so no generated image
# reference ever makes the daemon reach beyond this machine.
printf '[container]\nallowed_registries = ["127.0.0.1:9"]\n' > "$DATA/config.toml"
"$BIN" serve --config "$DATA/config.toml" --data-dir "$DATA" --http 127.0.0.1:0 > "$DATA/daemon.log" 2>&1 &
PID=$!
cleanup() {
  kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null
  # Remove the namespaces of any VPC or network interface the fuzzer managed to create.
  python3 - "$DATA/cloudlet.db" <<'PY' | while read -r ns; do ip netns del "$ns" 2>/dev/null || true; done
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for kind, rid in db.execute("SELECT DISTINCT kind, resource_id FROM events WHERE kind IN ('vpc', 'network_interface')"):
    print(("clv-" if kind == "vpc" else "cle-") + rid.lower())
PY
  # Stop any container the fuzzer managed to run (their shims outlive the daemon by design).
  for rec in "$DATA"/containers/*/shim.json; do
    [ -f "$rec" ] || continue
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["init_pid"], r["shim_pid"])' "$rec" | xargs -r kill -9 2>/dev/null || true
  done
  for m in $(awk -v d="$DATA" '$5 ~ "^"d {print $5}' /proc/self/mountinfo); do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$DATA"
}
trap cleanup EXIT
for _ in $(seq 1 200); do [ -s "$DATA/http.addr" ] && break; sleep 0.05; done
ADDR="$(cat "$DATA/http.addr")"
for _ in $(seq 1 200); do curl -sf "http://$ADDR/readyz" >/dev/null && break; sleep 0.05; done
cd "$DATA"  # Schemathesis writes its cache (.schemathesis/, .hypothesis/) into the working dir
python3 -c "import sys; from schemathesis.cli import schemathesis; sys.argv[0] = 'st'; sys.exit(schemathesis())" run "http://$ADDR/v1/openapi.json" -H "Authorization: Bearer $(cat "$DATA/admin.token")" \
  --checks not_a_server_error --max-examples 25 --continue-on-failure --seed 1
if grep -q panicked "$DATA/daemon.log"; then echo "the daemon panicked"; exit 1; fi
