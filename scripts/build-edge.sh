#!/usr/bin/env bash
# Builds the edge for both hosts:
#   worker  → edge/build/ (worker-build: cargo for wasm32-unknown-unknown, wasm-bindgen, esbuild),
#             then wasm-opt from npm's binaryen;
#   spin    → edge/build/spin/nene_edge.wasm (a wasi:http component; spin.toml's source).
# Usage: scripts/build-edge.sh [worker|spin|all]   (wrangler.toml's [build] calls it with `worker`)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Tests build once and then start wrangler many times: they set this to skip wrangler's rebuild.
if [ "${NENE_EDGE_PREBUILT:-}" = 1 ]; then
    exit 0
fi

what=${1:-all}
wasm_env=$NENE_CACHE/wasm-toolchain.env

build_worker() {
    (
        [ -f "$wasm_env" ] && source "$wasm_env"
        # worker-build would download these; give it the local ones (docs/decisions/0001-toolchain.md).
        export WASM_BINDGEN_BIN=$NENE_TOOLS/bin/wasm-bindgen
        export ESBUILD_BIN=$NENE_NPM/node_modules/@esbuild/linux-x64/bin/esbuild
        cd "$NENE_ROOT/edge"
        worker-build --release >&2
    )
    local wasm
    wasm=$(ls "$NENE_ROOT"/edge/build/*.wasm 2>/dev/null | head -1)
    [ -n "$wasm" ] || die "worker-build produced no .wasm under edge/build"
    "$NENE_NPM/node_modules/binaryen/bin/wasm-opt" -Oz --all-features \
        "$wasm" -o "$wasm.opt" && mv "$wasm.opt" "$wasm"
}

build_spin() {
    (
        [ -f "$wasm_env" ] && source "$wasm_env"
        cd "$NENE_ROOT"
        cargo build --quiet --release -p nene-edge --target wasm32-wasip2
    )
    # spin.toml points here: a stable path inside the clone, whatever CARGO_TARGET_DIR is.
    mkdir -p "$NENE_ROOT/edge/build/spin"
    cp "$CARGO_TARGET_DIR/wasm32-wasip2/release/nene_edge.wasm" "$NENE_ROOT/edge/build/spin/"
}

case $what in
worker) build_worker ;;
spin) build_spin ;;
all) build_worker && build_spin ;;
*) die "usage: $0 [worker|spin|all]" ;;
esac
