#!/usr/bin/env bash
# Build the example functions into wasm32-wasip2 components:
# target/functions/{hello,echo,config,spin,fetch}.wasm (from the repository root).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/target/functions"
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2 || {
    echo "images/functions: the wasm32-wasip2 target is not installed and rustup could not add it" >&2
    exit 3
  }
fi
# (Plain rustc: the daemon's test run makes clippy-driver the compiler of workspace crates, and
# these examples are not the daemon's workspace.)
CARGO_TARGET_DIR="$root/target/functions-build" env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS cargo build --manifest-path "$here/Cargo.toml" --release --target wasm32-wasip2 --quiet
mkdir -p "$out"
for f in hello echo config spin fetch; do
  cp "$root/target/functions-build/wasm32-wasip2/release/fn_$f.wasm" "$out/$f.wasm"
done
ls -l "$out"
