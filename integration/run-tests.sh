#!/usr/bin/env bash
# Run every test of cloudlet: unit and integration tests (cargo, against the real binary), the
# OpenAPI document's validity, the console's browser end-to-end test (Playwright + Chromium) and
# the nested KVM lane (cloudlet's VMM booting Debian's stock kernel on real KVM inside QEMU/TCG).
# Installs what is missing first (packaging/install-deps.sh). Exits non-zero if any stage fails.
set -uo pipefail
cd "$(dirname "$0")/.."
failed=()
BIN="$(realpath -m "${CARGO_TARGET_DIR:-target}")/release/cloudlet"
export CLOUDLET_BIN="$BIN"
stage() {
  local name="$1"; shift
  local t0=$SECONDS
  echo "=== $name"
  if "$@"; then echo "=== $name: ok ($((SECONDS - t0)) s)"
  else echo "=== $name: FAILED ($((SECONDS - t0)) s)"; failed+=("$name"); fi
}
stage "install dependencies" bash packaging/install-deps.sh || true
if ((${#failed[@]})); then echo "cannot continue without dependencies"; exit 1; fi
stage "build console" bash -c 'cd web-ui && npm run build --silent'
# Clippy lints the workspace's crates while they compile: clippy-driver is their compiler
# (RUSTC_WORKSPACE_WRAPPER; dependencies still get plain rustc) with warnings denied, so the
# release build (lib, bin, bench) and the test build (unit and integration tests) lint every
# target `cargo clippy --all-targets` does, on the one dependency build they share. A separate
# `cargo clippy` checks every dependency again: 734 s of a 3,768 s cold run on two cores.
# (CLIPPY_ARGS is how cargo-clippy itself hands clippy-driver its flags.)
export RUSTC_WORKSPACE_WRAPPER=clippy-driver CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__" CLOUDLET_CLIPPY_IN_BUILD=1
# The fast, unprivileged gate first: a formatting or dependency-policy failure ends the run in
# seconds, before the long stages.
stage "lint gate (fmt, deny)" bash integration/lint.sh
if ((${#failed[@]})); then echo "FAILED stages: ${failed[*]}"; exit 1; fi
stage "build (and clippy -D warnings)" cargo build --release --locked --bins --benches
if ((${#failed[@]})); then echo "FAILED stages: ${failed[*]}"; exit 1; fi
stage "build example functions" bash images/functions/build.sh
stage "openapi valid" bash -c '"$CLOUDLET_BIN" openapi > "$(dirname "$CLOUDLET_BIN")/openapi.json" &&
  python3 -m openapi_spec_validator "$(dirname "$CLOUDLET_BIN")/openapi.json"'
stage "api fuzz (schemathesis)" bash integration/fuzz-api.sh
stage "kernels and images" bash -c 'bash integration/nested-kvm/prepare.sh >/dev/null && bash images/vm/build.sh >/dev/null'
stage "cargo tests" cargo test --release --locked --workspace -- --test-threads=2
stage "browser e2e" bash -c 'cd integration/browser && npm test --silent'
# An L1 guest that stops running altogether (QEMU's software-emulated SVM sometimes never hands
# the L1 CPU back from a halted L2 guest: the host sees QEMU idle and L1's own timeouts never fire)
# ends as exit 124 after TIMEOUT; that one case is run once more. A step that reports a failure
# (any other exit code) is not retried.
l1() {
  TIMEOUT=900 bash integration/nested-kvm/run-l1.sh "$1"
  local rc=$?
  if [ "$rc" = 124 ]; then
    echo "nested-kvm: L1 stopped running (exit 124); running the step once more"
    TIMEOUT=900 bash integration/nested-kvm/run-l1.sh "$1"
    rc=$?
  fi
  return "$rc"
}
export -f l1
stage "nested KVM lane" bash -c 'l1 "sh $PWD/integration/nested-kvm/vmm-boot.sh $CLOUDLET_BIN" &&
  l1 "python3 $PWD/integration/nested-kvm/vmm-image.py $CLOUDLET_BIN" &&
  l1 "sh $PWD/integration/nested-kvm/daemon-lane.sh $CLOUDLET_BIN"'
if ((${#failed[@]})); then
  echo "FAILED stages: ${failed[*]}"
  exit 1
fi
echo "all test stages passed"
