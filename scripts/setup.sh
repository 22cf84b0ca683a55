#!/usr/bin/env bash
# Installs what the platform needs and is missing; skips what is present. Safe to run every time.
#
# Needs: Rust (cargo, rustup), Node ≥ 20 with npm, apt. Everything else goes under $NENE_CACHE.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mkdir -p "$NENE_TOOLS" "$NENE_NPM" "$NENE_RUN"

# One set-up at a time per cache: two checkouts sharing it (or `./nene test` beside `./nene up`)
# would otherwise install into the same directories at once and break each other's installs.
if command -v flock >/dev/null; then
    exec 9>"$NENE_CACHE/setup.lock"
    flock 9
fi

command -v cargo >/dev/null || die "cargo is missing: install Rust (rustup) first"
command -v npm >/dev/null || die "npm is missing: install Node.js ≥ 20 first"

# --- Debian packages the scripts use -----------------------------------------------------------
apt_missing=()
command -v curl >/dev/null || apt_missing+=(curl)
command -v python3 >/dev/null || apt_missing+=(python3)
# The README's tested commands (tests/tests/readme.rs) use jq and openssl.
command -v jq >/dev/null || apt_missing+=(jq)
command -v openssl >/dev/null || apt_missing+=(openssl)
# Debian splits venv (and the pip it bootstraps) out of python3.
python3 -c 'import ensurepip, venv' 2>/dev/null || apt_missing+=(python3-venv)
command -v pg_isready >/dev/null || apt_missing+=(postgresql-client)
command -v initdb >/dev/null || [ -x "$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1)/initdb" ] ||
    apt_missing+=(postgresql)
[ -f /etc/ssl/certs/ca-certificates.crt ] || apt_missing+=(ca-certificates)
# The core's image (./nene image): podman with runc (its default crun fails on these hosts'
# cgroups), and musl-gcc for the C parts of a static musl build. As root with --network host
# podman needs none of its recommends (buildah, slirp4netns, uidmap, fuse-overlayfs).
apt_bare=()
command -v podman >/dev/null || apt_bare+=(podman)
command -v runc >/dev/null || apt_bare+=(runc)
command -v musl-gcc >/dev/null || apt_bare+=(musl-tools)
if [ ${#apt_missing[@]} -gt 0 ] || [ ${#apt_bare[@]} -gt 0 ]; then
    log "apt: installing ${apt_missing[*]} ${apt_bare[*]}"
    apt-get update -qq
    [ ${#apt_missing[@]} -eq 0 ] ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}" >/dev/null
    [ ${#apt_bare[@]} -eq 0 ] ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_bare[@]}" >/dev/null
fi

# --- the musl target (the core's static build for its FROM-scratch image) -----------------------
# Only from rustup: Debian packages no musl std. Without it everything but `./nene image` and the
# image's end-to-end test works; those two stop and name what is missing.
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
    if rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1; then
        log "rustup: added x86_64-unknown-linux-musl"
    else
        log "rustup could not download x86_64-unknown-linux-musl: the core's image cannot be built here"
    fi
fi

# --- wasm targets ------------------------------------------------------------------------------
# rustup downloads them where it can. Where it cannot (no route to its server), Debian's rustc-web
# builds the Worker instead, with std built from source (docs/decisions/0001-toolchain.md).
wasm_targets_present() {
    local installed
    installed=$(rustup target list --installed 2>/dev/null || true)
    grep -qx wasm32-unknown-unknown <<<"$installed" && grep -qx wasm32-wasip2 <<<"$installed"
}
if wasm_targets_present; then
    :
elif rustup target add wasm32-unknown-unknown wasm32-wasip2 >/dev/null 2>&1; then
    log "rustup: added wasm32-unknown-unknown and wasm32-wasip2"
else
    log "rustup could not download the wasm targets: using Debian's rustc-web with build-std"
    R=$NENE_CACHE/rustc-web
    if [ ! -x "$R/usr/bin/rustc" ]; then
        debs=$(mktemp -d)
        apt-get update -qq
        (cd "$debs" && apt-get download -qq rustc-web cargo-web libstd-rust-web-1.96 \
            libstd-rust-web-dev rust-web-src rust-web-llvm libllvm22)
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libgit2-1.5 libssh2-1 libcurl4 >/dev/null
        mkdir -p "$R"
        for deb in "$debs"/*.deb; do dpkg -x "$deb" "$R"; done
        rm -rf "$debs"
    fi
    # worker-build refuses to start unless the target's library directory exists in the sysroot;
    # with build-std it stays empty (std is compiled from rust-web-src for each build).
    mkdir -p "$R/usr/lib/rustlib/wasm32-unknown-unknown/lib"
    lld=$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld
    cat >"$NENE_CACHE/wasm-toolchain.env" <<ENV
# Written by scripts/setup.sh: build wasm with Debian's rustc-web (rustup could not download targets).
# Debian's cargo-web first: the pairing measured to work with rustc-web and build-std.
export PATH=$R/usr/bin:\$PATH
export LD_LIBRARY_PATH=$R/usr/lib:$R/usr/lib/x86_64-linux-gnu:$R/usr/lib/llvm-22/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export RUSTC=$R/usr/bin/rustc
export RUSTC_BOOTSTRAP=1
export CARGO_UNSTABLE_BUILD_STD=std,panic_abort
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=$lld
export CARGO_TARGET_DIR=$NENE_CACHE/target-rustc-web
ENV
fi

# --- cargo-installed tools ---------------------------------------------------------------------
# Installs crate $1 at version $2 unless $3 (a binary) already reports that version.
cargo_tool() {
    local crate=$1 version=$2 binary=$3
    shift 3
    if "$NENE_TOOLS/bin/$binary" --version 2>/dev/null | grep -qF "$version"; then
        return
    fi
    log "cargo install $crate $version (once per machine; minutes)"
    # A target dir of its own, so installing never invalidates the project's build cache.
    CARGO_TARGET_DIR=$NENE_CACHE/install-target cargo install --quiet --root "$NENE_TOOLS" \
        "$crate" --version "$version" "$@"
}
# wasm-bindgen-cli must equal the wasm-bindgen in Cargo.lock. Not --locked: its own lock file
# wants a webpki-roots newer than the registry here serves.
cargo_tool wasm-bindgen-cli "$(locked_version wasm-bindgen)" wasm-bindgen
cargo_tool worker-build "$(locked_version worker)" worker-build --locked
# sqlx-cli must equal the sqlx in Cargo.lock: `./nene sqlx` writes the query macros' offline data
# (`.sqlx/`) with it, and `./nene test` checks that data against the migrations.
cargo_tool sqlx-cli "$(locked_version sqlx)" sqlx --locked --no-default-features --features postgres,rustls
# The Spin component's host in tests (the spin CLI cannot be installed here); only the features
# `wasmtime serve` needs.
cargo_tool wasmtime-cli "$WASMTIME_VERSION" wasmtime --locked --no-default-features \
    --features run,serve,cranelift,component-model,component-model-async,wasi-http,parallel-compilation,pooling-allocator,cache,logging

# --- npm: Node 22, wrangler, binaryen, pinned by tools/npm/package-lock.json --------------------
lock_sum=$(sha256sum "$NENE_ROOT/tools/npm/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$NENE_NPM/.lock-sum" 2>/dev/null)" != "$lock_sum" ]; then
    log "npm ci: node 22, wrangler, binaryen"
    cp "$NENE_ROOT/tools/npm/package.json" "$NENE_ROOT/tools/npm/package-lock.json" "$NENE_NPM/"
    (cd "$NENE_NPM" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$lock_sum" >"$NENE_NPM/.lock-sum"
fi

# --- Python: schemathesis for the api_fuzz suite, pinned by tools/python/requirements.txt -----
# A venv under the cache; built again only when the requirements change. --no-deps: the file
# lists every package at its exact version, so nothing unpinned is ever resolved.
py_sum=$(sha256sum "$NENE_ROOT/tools/python/requirements.txt" | cut -d' ' -f1)
if [ "$(cat "$NENE_PY/.requirements-sum" 2>/dev/null)" != "$py_sum" ] || [ ! -x "$NENE_PY/bin/schemathesis" ]; then
    log "pip: schemathesis into $NENE_PY"
    rm -rf "$NENE_PY"
    python3 -m venv "$NENE_PY"
    "$NENE_PY/bin/pip" install --quiet --disable-pip-version-check --no-deps \
        -r "$NENE_ROOT/tools/python/requirements.txt"
    "$NENE_PY/bin/pip" check --disable-pip-version-check >/dev/null ||
        die "tools/python/requirements.txt is inconsistent: $("$NENE_PY/bin/pip" check)"
    echo "$py_sum" >"$NENE_PY/.requirements-sum"
fi
