#!/usr/bin/env bash
# Throw-away test services for the test suite: redis-server, a PostgreSQL cluster and Debian's
# Chromium.  Everything runs on 127.0.0.1 on free ports, out of a private directory under /tmp,
# so parallel runs never clash and nothing touches a system-wide server.
#
# Three ways to use it (the first is what `make test` does):
#
#   scripts/with-test-services.sh CMD...     start, run CMD with the variables below, stop; exits
#                                            with CMD's status (see that script).
#   . scripts/test-services.sh               (bash) start and export into the current shell;
#                                            stop later with `test_services_stop`.
#   eval "$(scripts/test-services.sh start)" start and print `export` lines; stop later with
#                                            `scripts/test-services.sh stop "$SCHOLARISE_TEST_SERVICES_DIR"`.
#
# Exported on success:
#   SCHOLARISE_TEST_SERVICES=1            tests run under this managed set-up
#   SCHOLARISE_TEST_SERVICES_DIR=/tmp/... the run's private directory (logs, sockets, data)
#   REDIS_TEST_URL=redis://127.0.0.1:P/0  REDIS_SERVER_BIN=/usr/bin/redis-server
#   POSTGRES_TEST_URL=postgresql://postgres@127.0.0.1:Q/scholarise_test   POSTGRES_BIN_DIR=...
#   CHROMIUM_BIN=/usr/bin/chromium        CHROMEDRIVER_BIN=/usr/bin/chromedriver (when present)
#
# Missing packages (redis-server postgresql chromium chromium-driver) are installed with apt-get
# when running as root. Otherwise, or if that fails, the missing ones are named; with CI=true any
# missing or non-starting service is an error (non-zero status), locally the service's variable is
# left unset and the tests that need it skip.
#
# A watchdog process (own session) stops the servers if the owning shell dies without cleaning up
# (e.g. SIGKILL on a CI timeout), so no redis/postgres is ever left behind.

_ts_log() { printf 'test-services: %s\n' "$*" >&2; }

_ts_is_ci() {
    case "${CI:-}" in [Tt][Rr][Uu][Ee] | 1 | [Yy][Ee][Ss]) return 0 ;; *) return 1 ;; esac
}

_ts_pg_bindir() {
    if [ -n "${PG_BIN_DIR:-}" ] && [ -x "$PG_BIN_DIR/initdb" ]; then
        printf '%s\n' "$PG_BIN_DIR"
        return 0
    fi
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
        printf '%s\n' "$d"
        return 0
    fi
    return 1
}

_ts_redis_bin() {
    if [ -x /usr/bin/redis-server ]; then echo /usr/bin/redis-server; else command -v redis-server; fi
}

# Prints the apt packages whose programs are missing, one per line.
_ts_missing_packages() {
    _ts_redis_bin >/dev/null 2>&1 || echo redis-server
    _ts_pg_bindir >/dev/null 2>&1 || echo postgresql
    [ -x /usr/bin/chromium ] || echo chromium
    [ -x /usr/bin/chromedriver ] || echo chromium-driver
}

_ts_ensure_packages() {
    local missing
    missing=$(_ts_missing_packages | tr '\n' ' ')
    missing=${missing% }
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        _ts_log "installing missing packages: $missing"
        if ! DEBIAN_FRONTEND=noninteractive apt-get update -q >&2; then
            _ts_log "apt-get update failed"
        fi
        # shellcheck disable=SC2086
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >&2; then
            _ts_log "apt-get install failed"
        fi
        missing=$(_ts_missing_packages | tr '\n' ' ')
        missing=${missing% }
        [ -z "$missing" ] && return 0
    fi
    _ts_log "MISSING packages: $missing"
    if [ "$(id -u)" -eq 0 ]; then
        _ts_log "  installing them failed; try: apt-get update && apt-get install -y $missing"
    else
        _ts_log "  not root, so not installing; run: sudo apt-get update && sudo apt-get install -y $missing"
    fi
    return 1
}

# Two distinct free TCP ports on 127.0.0.1.
_ts_free_ports() {
    python3 - "$@" <<'EOF'
import socket
socks = []
for _ in range(2):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

# Does a redis answer PING on 127.0.0.1:$1 ?  (subshells keep the fd and any error to themselves)
_ts_redis_ping() {
    (
        exec 7<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'PING\r\n' >&7
        IFS= read -r -t 2 reply <&7 || exit 1
        [ "${reply%$'\r'}" = "+PONG" ]
    ) 2>/dev/null
}

_ts_redis_shutdown() {
    (
        exec 7<>"/dev/tcp/127.0.0.1/$1" || exit 0
        printf 'SHUTDOWN NOSAVE\r\n' >&7
        IFS= read -r -t 2 reply <&7
        exit 0
    ) 2>/dev/null
}

# Run a command as the PostgreSQL owner (postgres refuses to run as root).
_ts_as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        if command -v runuser >/dev/null 2>&1; then
            runuser -u postgres -- "$@"
        else
            su -s /bin/sh postgres -c "$(printf '%q ' "$@")"
        fi
    else
        "$@"
    fi
}

_ts_start_redis() {
    local dir=$1 port=$2 bin
    bin=$(_ts_redis_bin) || return 1
    "$bin" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
        --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >&2 || return 1
    local i
    for i in $(seq 1 100); do
        _ts_redis_ping "$port" && {
            echo "$port" >"$dir/redis.port"
            REDIS_TEST_URL="redis://127.0.0.1:$port/0"
            REDIS_SERVER_BIN=$bin
            return 0
        }
        sleep 0.05
    done
    _ts_log "redis-server did not answer on port $port; log:"
    tail -n 20 "$dir/redis.log" >&2 2>/dev/null
    return 1
}

_ts_start_postgres() {
    local dir=$1 port=$2 bindir
    bindir=$(_ts_pg_bindir) || return 1
    if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
        _ts_log "running as root but there is no 'postgres' user to run PostgreSQL as"
        return 1
    fi
    mkdir -p "$dir/pg" && chmod 700 "$dir/pg" || return 1
    [ "$(id -u)" -eq 0 ] && chown -R postgres: "$dir/pg"
    # initdb/postgres cannot read root's working directory: run from the private directory.
    (
        cd "$dir/pg" || exit 1
        _ts_as_pg "$bindir/initdb" -D "$dir/pg/data" -U postgres --auth=trust --encoding=UTF8 \
            --locale=C --no-sync --no-instructions >"$dir/pg/initdb.log" 2>&1
    ) || {
        _ts_log "initdb failed; log:"
        tail -n 20 "$dir/pg/initdb.log" >&2
        return 1
    }
    (
        cd "$dir/pg" || exit 1
        _ts_as_pg "$bindir/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/postgres.log" -w -t 30 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/pg -c max_connections=200 -c fsync=off -c full_page_writes=off -c synchronous_commit=off" \
            start >"$dir/pg/pg_ctl.log" 2>&1
    ) || {
        _ts_log "PostgreSQL did not start; log:"
        tail -n 20 "$dir/pg/postgres.log" "$dir/pg/pg_ctl.log" >&2 2>/dev/null
        return 1
    }
    echo "$port" >"$dir/pg.port"
    (
        cd "$dir/pg" || exit 1
        _ts_as_pg "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres scholarise_test
    ) >&2 || {
        _ts_log "could not create database scholarise_test"
        return 1
    }
    POSTGRES_TEST_URL="postgresql://postgres@127.0.0.1:$port/scholarise_test"
    POSTGRES_BIN_DIR=$bindir
    return 0
}

# Is the process running? (A zombie waiting for a slow init to reap it counts as gone.)
_ts_alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# Stops whatever a run directory holds and removes it. Idempotent; safe to call concurrently.
_ts_stop_dir() {
    local dir=$1 pid redis_pid="" port bindir i
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    case "$dir" in /tmp/scholarise-test-services.*) ;; *)
        _ts_log "refusing to stop unknown directory $dir"
        return 1
        ;;
    esac
    if [ -f "$dir/watchdog.pid" ]; then
        pid=$(cat "$dir/watchdog.pid" 2>/dev/null)
        [ -n "$pid" ] && [ "$pid" != "$$" ] && kill "$pid" 2>/dev/null
    fi
    # redis: the process we started, and anything a test restarted on our port.
    if [ -f "$dir/redis.pid" ]; then
        redis_pid=$(cat "$dir/redis.pid" 2>/dev/null)
        [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null
    fi
    if [ -f "$dir/redis.port" ]; then
        port=$(cat "$dir/redis.port" 2>/dev/null)
        [ -n "$port" ] && _ts_redis_ping "$port" && _ts_redis_shutdown "$port"
    fi
    # postgres: immediate stop (test data only), SIGQUIT to the postmaster as a fallback.
    if [ -f "$dir/pg/data/postmaster.pid" ]; then
        bindir=$(_ts_pg_bindir 2>/dev/null)
        if [ -n "$bindir" ]; then
            (cd "$dir/pg" && _ts_as_pg "$bindir/pg_ctl" -D "$dir/pg/data" -m immediate -w -t 20 stop) \
                >/dev/null 2>&1
        fi
        if [ -f "$dir/pg/data/postmaster.pid" ]; then
            pid=$(head -n 1 "$dir/pg/data/postmaster.pid" 2>/dev/null)
            [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null
        fi
    fi
    if [ -n "$redis_pid" ]; then
        for i in $(seq 1 60); do
            _ts_alive "$redis_pid" || break
            sleep 0.05
        done
    fi
    rm -rf "$dir"
}

_ts_start_watchdog() {
    local dir=$1 owner=$2 self
    self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
    # its own session: a Ctrl-C or a kill of the process group does not take it down with the rest
    setsid bash "$self" _watchdog "$owner" "$dir" </dev/null >/dev/null 2>&1 &
}

# Start everything; sets and exports the variables. Returns non-zero when something required
# (all of it under CI=true) is missing or failed; cleans up after itself in that case.
test_services_start() {
    local owner=${1:-$$} failed="" ports redis_port pg_port
    if ! _ts_ensure_packages; then
        if _ts_is_ci; then
            _ts_log "FAILED (CI=true, every service is required): missing packages"
            return 1
        fi
        failed=" $(_ts_missing_packages | tr '\n' ' ')"
        failed=${failed% }
    fi
    unset REDIS_TEST_URL REDIS_SERVER_BIN POSTGRES_TEST_URL POSTGRES_BIN_DIR CHROMIUM_BIN CHROMEDRIVER_BIN
    SCHOLARISE_TEST_SERVICES_DIR=$(mktemp -d /tmp/scholarise-test-services.XXXXXXXX) || return 1
    chmod 755 "$SCHOLARISE_TEST_SERVICES_DIR"
    echo "$owner" >"$SCHOLARISE_TEST_SERVICES_DIR/owner.pid"
    [ "$owner" != none ] && _ts_start_watchdog "$SCHOLARISE_TEST_SERVICES_DIR" "$owner"

    local attempt
    if _ts_redis_bin >/dev/null 2>&1; then
        for attempt in 1 2 3; do
            ports=$(_ts_free_ports) || break
            redis_port=${ports% *}
            _ts_start_redis "$SCHOLARISE_TEST_SERVICES_DIR" "$redis_port" && break
        done
        [ -n "${REDIS_TEST_URL:-}" ] || { _ts_log "redis: NOT started"; failed="$failed redis"; }
    fi
    if _ts_pg_bindir >/dev/null 2>&1; then
        for attempt in 1 2 3; do
            ports=$(_ts_free_ports) || break
            pg_port=${ports#* }
            _ts_start_postgres "$SCHOLARISE_TEST_SERVICES_DIR" "$pg_port" && break
            [ -f "$SCHOLARISE_TEST_SERVICES_DIR/pg/data/postmaster.pid" ] && break
            rm -rf "$SCHOLARISE_TEST_SERVICES_DIR/pg"
        done
        [ -n "${POSTGRES_TEST_URL:-}" ] || { _ts_log "postgres: NOT started"; failed="$failed postgres"; }
    fi
    [ -x /usr/bin/chromium ] && CHROMIUM_BIN=/usr/bin/chromium
    [ -x /usr/bin/chromedriver ] && CHROMEDRIVER_BIN=/usr/bin/chromedriver

    export SCHOLARISE_TEST_SERVICES=1 SCHOLARISE_TEST_SERVICES_DIR
    local v
    for v in REDIS_TEST_URL REDIS_SERVER_BIN POSTGRES_TEST_URL POSTGRES_BIN_DIR CHROMIUM_BIN CHROMEDRIVER_BIN; do
        if [ -n "${!v:-}" ]; then export "${v?}"; _ts_log "$v=${!v}"; fi
    done

    if [ -n "$failed" ]; then
        if _ts_is_ci; then
            _ts_log "FAILED (CI=true, every service is required):$failed"
            test_services_stop
            return 1
        fi
        _ts_log "continuing without:$failed (tests needing them will skip; with CI=true this fails)"
    fi
    return 0
}

test_services_stop() {
    [ -n "${SCHOLARISE_TEST_SERVICES_DIR:-}" ] && _ts_stop_dir "$SCHOLARISE_TEST_SERVICES_DIR"
    unset SCHOLARISE_TEST_SERVICES SCHOLARISE_TEST_SERVICES_DIR REDIS_TEST_URL REDIS_SERVER_BIN \
        POSTGRES_TEST_URL POSTGRES_BIN_DIR CHROMIUM_BIN CHROMEDRIVER_BIN
    return 0
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    # Sourced. with-test-services.sh sets TEST_SERVICES_NO_AUTOSTART and calls the functions itself.
    if [ -z "${TEST_SERVICES_NO_AUTOSTART:-}" ]; then
        test_services_start "$$" || return 1
        _ts_log "running; stop with: test_services_stop"
    fi
else
    case "${1:-}" in
    start)
        test_services_start none || exit 1
        for _ts_v in SCHOLARISE_TEST_SERVICES SCHOLARISE_TEST_SERVICES_DIR REDIS_TEST_URL REDIS_SERVER_BIN \
            POSTGRES_TEST_URL POSTGRES_BIN_DIR CHROMIUM_BIN CHROMEDRIVER_BIN; do
            [ -n "${!_ts_v:-}" ] && printf 'export %s=%q\n' "$_ts_v" "${!_ts_v}"
        done
        _ts_log "stop with: $0 stop $SCHOLARISE_TEST_SERVICES_DIR"
        exit 0
        ;;
    stop)
        _ts_stop_dir "${2:-${SCHOLARISE_TEST_SERVICES_DIR:-}}"
        exit $?
        ;;
    _watchdog)
        # internal: stop the run's servers once the owning process is gone
        trap '' INT HUP
        trap 'exit 0' TERM
        echo "$$" >"$3/watchdog.pid"
        while _ts_alive "$2" && [ -d "$3" ]; do sleep 1; done
        rm -f "$3/watchdog.pid"
        _ts_stop_dir "$3"
        exit 0
        ;;
    *)
        echo "usage: . $0 | $0 start | $0 stop DIR | scripts/with-test-services.sh CMD..." >&2
        exit 2
        ;;
    esac
fi
