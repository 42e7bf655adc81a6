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
CARGO_TARGET_DIR="$root/target/functions-build" cargo build --manifest-path "$here/Cargo.toml" --release --target wasm32-wasip2 --quiet
mkdir -p "$out"
for f in hello echo config spin fetch; do
  cp "$root/target/functions-build/wasm32-wasip2/release/fn_$f.wasm" "$out/$f.wasm"
done
ls -l "$out"
