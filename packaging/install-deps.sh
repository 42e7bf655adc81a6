#!/usr/bin/env bash
# Install everything cloudlet needs to build, run and test on Debian 12, from the project's own
# files: Debian packages, npm modules (web-ui/ and integration/browser/) and PyPI tools.
# Idempotent: a second run installs nothing new. Needs root for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

# Runtime: nftables + iproute2 (VPCs), ca-certificates. Build: pkg-config, gcc.
# Tests: chromium (console e2e), fonts for the Chinese UI screenshot, python3-pip, curl.
# Benchmarks: wrk (HTTP load from a second process), etcd-server (the peer of the API benchmark),
# iperf3 (network throughput). busybox: its udhcpc is the DHCP client of the VPC tests.
# Images: docker-registry (the local registry of integration/registry.sh), apache2-utils (its
# `htpasswd -B` for basic auth). busybox-static is fetched by `apt-get download`, not installed:
# it conflicts with busybox. Containers: libseccomp-dev (libcontainer's seccomp), runc (the peer of
# the container benchmark). Volumes: e2fsprogs (mkfs.ext4, e2fsck, resize2fs; in every Debian).
# Object storage: awscli and rclone, real S3 clients of the tests (boto3 comes from PyPI below).
# The nested KVM lane: qemu-system-x86 (the L1 guest, and the QEMU peer of the VMM), kmod
# (depmod for the unpacked kernel packages) and cpio (initramfs images). The portal: postgresql
# (its store for fleets; the tests run throwaway clusters of it with initdb).
DEBS=(nftables iproute2 ca-certificates pkg-config gcc curl chromium fonts-wqy-microhei python3-pip wrk etcd-server iperf3 busybox
      docker-registry apache2-utils libseccomp-dev runc e2fsprogs awscli rclone qemu-system-x86 kmod cpio postgresql)
missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "install-deps: cargo (Rust toolchain) is required" >&2; exit 1; }
# The example serverless functions (images/functions/) are wasm32-wasip2 components: the
# target's standard library comes from rustup. Without it only the functions' tests fail (with
# this reason), so the rest of the suite still runs.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2 ||
    echo "install-deps: WARNING: rustup could not add the wasm32-wasip2 target; the example functions cannot be built" >&2
fi
# cargo-deny, the dependency-policy half of the lint gate (integration/lint.sh, deny.toml), built
# from crates.io (the machines reach no other binary source): a few minutes, once.
if ! cargo deny --version 2>/dev/null | grep -q '^cargo-deny 0\.20\.'; then
  cargo install --locked --quiet cargo-deny --version '~0.20.2'
fi
command -v node >/dev/null && command -v npm >/dev/null || {
  echo "install-deps: node and npm are required (Node.js >= 20.19 for Vite 8)" >&2; exit 1; }

# npm modules, exactly as locked.
for d in web-ui integration/browser; do
  if [ ! -d "$d/node_modules" ] || [ "$d/package-lock.json" -nt "$d/node_modules/.package-lock.json" ]; then
    (cd "$d" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done

# PyPI: the OpenAPI validator and the API fuzzer (Schemathesis) used by the test suite.
python3 -c 'import openapi_spec_validator' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check 'openapi-spec-validator>=0.7,<0.8'
python3 -c 'import schemathesis' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check 'schemathesis>=4.32,<5'
# boto3, the S3 SDK of the object storage tests and benchmark.
python3 -c 'import boto3' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check 'boto3>=1.36,<2'
echo "install-deps: ok"
