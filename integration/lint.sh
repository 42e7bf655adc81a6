#!/usr/bin/env bash
# The fast gate, run before every long test stage (integration/run-tests.sh stops when it fails):
# formatting (rustfmt.toml), clippy on every target with warnings as errors (the [lints] tables
# of Cargo.toml; in run-tests.sh it runs inside the build, see there), and cargo-deny's license, duplicate-crate and source checks (deny.toml). Needs
# no root. The advisories check fetches the RustSec database from GitHub, which the CI machines
# cannot reach: it runs only with CLOUDLET_ADVISORIES=1 (on a machine that can).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "lint: cargo fmt --check"
cargo fmt --all --check
# integration/run-tests.sh lints inside its build instead (clippy-driver as the workspace's
# compiler, CLOUDLET_CLIPPY_IN_BUILD=1): one dependency build for lint, build and tests.
if [ "${CLOUDLET_CLIPPY_IN_BUILD:-0}" != 1 ]; then
  echo "lint: cargo clippy -D warnings"
  cargo clippy --workspace --all-targets --locked --quiet -- -D warnings
fi
echo "lint: cargo deny"
checks=(licenses bans sources)
[ "${CLOUDLET_ADVISORIES:-0}" = 1 ] && checks+=(advisories)
cargo deny --locked --log-level error check "${checks[@]}"
echo "lint: ok"
