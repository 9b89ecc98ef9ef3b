# Sourced by scripts/test and scripts/demo: makes sure the servers and emulators the tests need
# are running on 127.0.0.1, installing what is missing, and remembers what it started so that
# `services_stop` stops exactly that (by PID) and nothing else.
#
# Honoured when already set (then nothing is started for it): DATABASE_URL, POSTGRES_TLS_URL
# (with POSTGRES_TLS_CA_PEM), REDIS_URL, REDIS_TLS_URL (with REDIS_TLS_CA_PEM), DYNAMODB_ENDPOINT,
# DYNAMODB_TX_ENDPOINT (a DynamoDB emulator with transactions), KINESIS_ENDPOINT, CLOUDWATCH_ENDPOINT, KCLPY_DIR (an unpacked amazon-kclpy source) and
# AWS_KCL_NODE_PATH (a node_modules holding aws-kcl).
# Ports of what this script starts: SHARDWISE_CLOUDWATCH_PORT (15917, moto's server),
# SHARDWISE_POSTGRES_TLS_PORT (15433, a PostgreSQL taking only TLS, certificate from the test CA),
# SHARDWISE_REDIS_TLS_PORT (16380, a TLS-only Redis with a test CA made here),
# SHARDWISE_DYNAMODB_PORT (18000), SHARDWISE_DYNOXIDE_PORT (18001, dynoxide: dynalite has no
# TransactWriteItems), SHARDWISE_KINESIS_PORT (14568, plain HTTP/1.1 and h2c) and
# SHARDWISE_KINESIS_TLS_PORT (14567, HTTP/2 over TLS with a test CA made here).

SERVICES_DIR="${SERVICES_DIR:-$PWD/.emulators}"
SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DYNALITE_VERSION="4.0.0"
DYNOXIDE_VERSION="3.2.0"
# Tools built with cargo install outlive a clone here (the build takes minutes on 2 cores).
TOOLS_DIR="${SHARDWISE_TOOLS_DIR:-$HOME/.cache/shardwise}"
KINESIS_LOCAL_VERSION="0.6.2"
MOTO_VERSION="5.2.5"
KCLPY_VERSION="3.2.0"
AWS_KCL_VERSION="2.3.2"
STARTED_PIDS=()

say() { printf '[services] %s\n' "$*" >&2; }

apt_install() {
    say "installing $* with apt-get"
    if [ -z "${APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

wait_until() { # wait_until SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "timed out after ${seconds}s waiting for $what"
            return 1
        fi
        sleep 0.2
    done
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

postgres_bindir() { # the newest installed PostgreSQL server's bin directory, installing one if none
    local bindir
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ ! -x "$bindir/initdb" ]; then
        apt_install postgresql
        bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    printf '%s\n' "$bindir"
}

init_postgres_cluster() { # init_postgres_cluster DIR: a throwaway cluster in DIR, made once
    local data=$1 bindir
    [ -f "$data/PG_VERSION" ] && return 0
    bindir=$(postgres_bindir) || return 1
    say "creating a PostgreSQL instance in $data"
    mkdir -p "$data" && chown postgres: "$data" && chmod 700 "$data"
    runuser -u postgres -- "$bindir/initdb" -D "$data" -A trust -U postgres >/dev/null
}

start_postgres_cluster() { # start_postgres_cluster DIR PORT [SETTING=VALUE...]
    # As the postgres user (PostgreSQL refuses to run as root), on 127.0.0.1:PORT only, its
    # socket in DIR, fsync off; pg_ctl waits until it accepts connections. Its PID is remembered.
    local data=$1 port=$2 bindir setting
    shift 2
    local options="-c listen_addresses=127.0.0.1 -p $port -k $data -c fsync=off"
    for setting in "$@"; do options+=" -c $setting"; done
    bindir=$(postgres_bindir) || return 1
    runuser -u postgres -- "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -s -o "$options" start || return 1
    STARTED_PIDS+=("$(head -n 1 "$data/postmaster.pid")")
}

ensure_postgres() {
    if [ -n "${DATABASE_URL:-}" ]; then return 0; fi
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/test"
    command -v pg_isready >/dev/null || apt_install postgresql postgresql-client
    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        local data="$SERVICES_DIR/postgres"
        init_postgres_cluster "$data" || return 1
        say "starting PostgreSQL on 127.0.0.1:5432"
        start_postgres_cluster "$data" 5432 || return 1
        wait_until 30 PostgreSQL pg_isready -q -h 127.0.0.1 -p 5432 || return 1
    fi
    if ! psql -h 127.0.0.1 -U postgres -d test -Atc 'select 1' >/dev/null 2>&1; then
        psql -h 127.0.0.1 -U postgres -d postgres -qc 'create database test' >/dev/null
    fi
}

postgres_tls_psql() { # postgres_tls_psql PORT CA DATABASE PSQL-ARGS...: over TLS, certificate checked
    local port=$1 ca=$2 database=$3
    shift 3
    psql "host=localhost port=$port user=postgres dbname=$database sslmode=verify-full sslrootcert=$ca" "$@"
}

postgres_tls_answers() { # SELECT 1 over TLS, checking the certificate against the test CA
    [ "$(postgres_tls_psql "$1" "$2" postgres -Atc 'select 1' 2>/dev/null)" = "1" ]
}

ensure_postgres_tls() { # a second PostgreSQL that takes TLS connections only, certificate from the test CA
    if [ -n "${POSTGRES_TLS_URL:-}" ]; then return 0; fi
    local port="${SHARDWISE_POSTGRES_TLS_PORT:-15433}" tls="$SERVICES_DIR/tls" data="$SERVICES_DIR/postgres-tls"
    command -v psql >/dev/null || apt_install postgresql-client
    make_test_ca
    if ! port_free "$port"; then
        say "port $port is busy; set SHARDWISE_POSTGRES_TLS_PORT or POSTGRES_TLS_URL"
        return 1
    fi
    init_postgres_cluster "$data" || return 1
    # PostgreSQL reads the key only when the server's user owns it with mode 0600 (the test CA's
    # copy is root's), so the cluster gets its own copies of the certificate and key.
    install -o postgres -g postgres -m 600 "$tls/server.key" "$data/server.key"
    install -o postgres -g postgres -m 644 "$tls/server.pem" "$data/server.pem"
    # TLS or nothing: no plain `host` line is accepted, and no `local` (Unix socket) line at all.
    printf '%s\n' "# Written by scripts/services.sh (ensure_postgres_tls): TLS connections only." \
        "hostssl all all 127.0.0.1/32 trust" "hostssl all all ::1/128 trust" \
        "host all all 0.0.0.0/0 reject" "host all all ::/0 reject" >"$data/pg_hba.conf"
    chown postgres: "$data/pg_hba.conf"
    say "starting PostgreSQL with TLS only on 127.0.0.1:$port"
    start_postgres_cluster "$data" "$port" ssl=on "ssl_cert_file=$data/server.pem" \
        "ssl_key_file=$data/server.key" || return 1
    wait_until 30 "PostgreSQL (TLS)" postgres_tls_answers "$port" "$tls/ca.pem" || return 1
    if ! postgres_tls_psql "$port" "$tls/ca.pem" test -Atc 'select 1' >/dev/null 2>&1; then
        postgres_tls_psql "$port" "$tls/ca.pem" postgres -qc 'create database test' >/dev/null || return 1
    fi
    export POSTGRES_TLS_URL="postgres://postgres@localhost:$port/test"
    export POSTGRES_TLS_CA_PEM="$tls/ca.pem"
}

ensure_redis() {
    if [ -n "${REDIS_URL:-}" ]; then return 0; fi
    export REDIS_URL="redis://127.0.0.1:6379"
    command -v redis-server >/dev/null || apt_install redis-server redis-tools
    if [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" != "PONG" ]; then
        say "starting Redis on 127.0.0.1:6379"
        mkdir -p "$SERVICES_DIR"
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no \
            --pidfile "$SERVICES_DIR/redis.pid" --logfile "$SERVICES_DIR/redis.log" --dir "$SERVICES_DIR"
        wait_until 15 Redis test -s "$SERVICES_DIR/redis.pid" || return 1
        STARTED_PIDS+=("$(cat "$SERVICES_DIR/redis.pid")")
        wait_until 15 Redis redis-cli -h 127.0.0.1 -p 6379 ping
    fi
}

redis_tls_answers() { # PING over TLS, checking the certificate against the test CA
    [ "$(redis-cli --tls --cacert "$2" -h localhost -p "$1" ping 2>/dev/null)" = "PONG" ]
}

ensure_redis_tls() { # a second Redis, TLS only (no plain port), certificate from the test CA
    if [ -n "${REDIS_TLS_URL:-}" ]; then return 0; fi
    local port="${SHARDWISE_REDIS_TLS_PORT:-16380}" tls="$SERVICES_DIR/tls"
    command -v redis-server >/dev/null || apt_install redis-server redis-tools
    make_test_ca
    if ! port_free "$port"; then
        say "port $port is busy; set SHARDWISE_REDIS_TLS_PORT or REDIS_TLS_URL"
        return 1
    fi
    say "starting Redis with TLS only on 127.0.0.1:$port"
    rm -f "$SERVICES_DIR/redis-tls.pid"
    redis-server --daemonize yes --bind 127.0.0.1 --port 0 --tls-port "$port" \
        --tls-cert-file "$tls/server.pem" --tls-key-file "$tls/server.key" \
        --tls-ca-cert-file "$tls/ca.pem" --tls-auth-clients no --save '' --appendonly no \
        --pidfile "$SERVICES_DIR/redis-tls.pid" --logfile "$SERVICES_DIR/redis-tls.log" --dir "$SERVICES_DIR"
    wait_until 15 "Redis (TLS)" test -s "$SERVICES_DIR/redis-tls.pid" || return 1
    STARTED_PIDS+=("$(cat "$SERVICES_DIR/redis-tls.pid")")
    wait_until 15 "Redis (TLS)" redis_tls_answers "$port" "$tls/ca.pem" || return 1
    export REDIS_TLS_URL="rediss://localhost:$port"
    export REDIS_TLS_CA_PEM="$tls/ca.pem"
}

ensure_node() {
    command -v npm >/dev/null || apt_install nodejs npm
}

npm_tool() { # npm_tool PACKAGE VERSION BIN: installs into $SERVICES_DIR/npm once, prints the binary path
    # One prefix per package: npm prunes what a --no-save install did not name.
    local package=$1 version=$2 bin=$3 prefix="$SERVICES_DIR/npm/$1"
    if [ ! -x "$prefix/node_modules/.bin/$bin" ] ||
        ! grep -Eq "\"version\" ?: ?\"$version\"" "$prefix/node_modules/$package/package.json" 2>/dev/null; then
        ensure_node
        mkdir -p "$prefix"
        say "installing $package@$version with npm"
        npm install --silent --no-audit --no-fund --no-save --prefix "$prefix" "$package@$version" >/dev/null
    fi
    printf '%s\n' "$prefix/node_modules/.bin/$bin"
}

dynamodb_answers() { # a real API call: ListTables
    node -e '
        const http = require("http");
        const req = http.request({host: "127.0.0.1", port: process.argv[1], method: "POST", path: "/",
            headers: {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Date": "20200101T000000Z", "X-Amz-Target": "DynamoDB_20120810.ListTables",
                      "Authorization": "AWS4-HMAC-SHA256 Credential=x/20200101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=x"}},
            res => process.exit(res.statusCode === 200 ? 0 : 1));
        req.on("error", () => process.exit(1));
        req.end("{}");' "$1"
}

ensure_dynamodb() {
    if [ -n "${DYNAMODB_ENDPOINT:-}" ]; then return 0; fi
    local port="${SHARDWISE_DYNAMODB_PORT:-18000}" bin
    bin=$(npm_tool dynalite "$DYNALITE_VERSION" dynalite) || return 1
    if ! port_free "$port"; then
        say "port $port is busy; set SHARDWISE_DYNAMODB_PORT or DYNAMODB_ENDPOINT"
        return 1
    fi
    say "starting dynalite $DYNALITE_VERSION on 127.0.0.1:$port"
    "$bin" --host 127.0.0.1 --port "$port" --createTableMs 50 --deleteTableMs 50 \
        >"$SERVICES_DIR/dynalite.log" 2>&1 &
    STARTED_PIDS+=("$!")
    wait_until 30 dynalite dynamodb_answers "$port" || return 1
    export DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
}

ensure_dynoxide() { # dynoxide-rs: a DynamoDB emulator with TransactWriteItems, for the exactly-once tests
    if [ -n "${DYNAMODB_TX_ENDPOINT:-}" ]; then return 0; fi
    local port="${SHARDWISE_DYNOXIDE_PORT:-18001}" root="$TOOLS_DIR/dynoxide-$DYNOXIDE_VERSION"
    if [ ! -x "$root/bin/dynoxide" ]; then
        say "installing dynoxide-rs $DYNOXIDE_VERSION with cargo (a few minutes, once)"
        cargo install --quiet --locked "dynoxide-rs@$DYNOXIDE_VERSION" --no-default-features \
            --features native-sqlite,http-server,cli --root "$root" || return 1
    fi
    if ! port_free "$port"; then
        say "port $port is busy; set SHARDWISE_DYNOXIDE_PORT or DYNAMODB_TX_ENDPOINT"
        return 1
    fi
    mkdir -p "$SERVICES_DIR"
    say "starting dynoxide $DYNOXIDE_VERSION on 127.0.0.1:$port"
    "$root/bin/dynoxide" serve --host 127.0.0.1 --port "$port" >"$SERVICES_DIR/dynoxide.log" 2>&1 &
    STARTED_PIDS+=("$!")
    ensure_node
    wait_until 30 dynoxide dynamodb_answers "$port" || return 1
    export DYNAMODB_TX_ENDPOINT="http://127.0.0.1:$port"
}

kinesis_answers() { # a real API call: ListStreams on the plain port
    node -e '
        const http = require("http");
        const req = http.request({host: "127.0.0.1", port: process.argv[1], method: "POST", path: "/",
            headers: {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Date": "20200101T000000Z", "X-Amz-Target": "Kinesis_20131202.ListStreams",
                      "Authorization": "AWS4-HMAC-SHA256 Credential=x/20200101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=x"}},
            res => process.exit(res.statusCode === 200 ? 0 : 1));
        req.on("error", () => process.exit(1));
        req.end("{}");' "$1"
}

make_test_ca() { # a throwaway CA and a server certificate for localhost / 127.0.0.1
    local dir="$SERVICES_DIR/tls"
    [ -s "$dir/server.json" ] && [ -s "$dir/ca.pem" ] && return 0
    command -v openssl >/dev/null || apt_install openssl
    mkdir -p "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=shardwise test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$dir/server.key" \
        -out "$dir/server.csr" 2>/dev/null
    printf '%s\n' "basicConstraints=CA:FALSE" "extendedKeyUsage=serverAuth" \
        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 3650 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
    openssl pkcs8 -topk8 -nocrypt -in "$dir/server.key" -out "$dir/server.pk8"
    ensure_node # ensure_redis_tls or ensure_postgres_tls may come here before anything installed node
    node -e '
        const fs = require("fs"); const d = process.argv[1];
        const cert = fs.readFileSync(d + "/server.pem", "utf8") + fs.readFileSync(d + "/ca.pem", "utf8");
        fs.writeFileSync(d + "/server.json", JSON.stringify({server: {key: fs.readFileSync(d + "/server.pk8", "utf8"), cert}}));' "$dir"
}

ensure_kinesis() {
    if [ -n "${KINESIS_ENDPOINT:-}" ]; then return 0; fi
    local port="${SHARDWISE_KINESIS_PORT:-14568}" tls_port="${SHARDWISE_KINESIS_TLS_PORT:-14567}" bin
    bin=$(npm_tool kinesis-local "$KINESIS_LOCAL_VERSION" kinesis-local) || return 1
    make_test_ca
    for p in "$port" "$tls_port"; do
        if ! port_free "$p"; then
            say "port $p is busy; set SHARDWISE_KINESIS_PORT / SHARDWISE_KINESIS_TLS_PORT or KINESIS_ENDPOINT"
            return 1
        fi
    done
    say "starting kinesis-local $KINESIS_LOCAL_VERSION on 127.0.0.1:$port (plain) and :$tls_port (TLS)"
    (cd "$SERVICES_DIR" &&
        KINESIS_MOCK_PLAIN_PORT="$port" KINESIS_MOCK_TLS_PORT="$tls_port" \
        KINESIS_MOCK_CERT_PATH="$SERVICES_DIR/tls/server.json" \
        CREATE_STREAM_DURATION=50ms DELETE_STREAM_DURATION=50ms SPLIT_SHARD_DURATION=50ms \
        MERGE_SHARDS_DURATION=50ms UPDATE_SHARD_COUNT_DURATION=50ms \
        REGISTER_STREAM_CONSUMER_DURATION=50ms DEREGISTER_STREAM_CONSUMER_DURATION=50ms \
        SHARD_LIMIT=1000 LOG_LEVEL=WARN \
        exec node -r "$SCRIPTS_DIR/emulators/loopback-only.cjs" "$(readlink -f "$bin")" \
        >"$SERVICES_DIR/kinesis-local.log" 2>&1) &
    STARTED_PIDS+=("$!")
    wait_until 60 kinesis-local kinesis_answers "$port" || return 1
    export KINESIS_ENDPOINT="http://127.0.0.1:$port"
    export KINESIS_TLS_ENDPOINT="https://localhost:$tls_port"
    export KINESIS_CA_PEM="$SERVICES_DIR/tls/ca.pem"
}

moto_answers() { # moto's own API answers once the server is up
    node -e '
        const http = require("http");
        http.get({host: "127.0.0.1", port: process.argv[1], path: "/moto-api/"},
            res => process.exit(res.statusCode === 200 ? 0 : 1)).on("error", () => process.exit(1));' "$1"
}

ensure_cloudwatch() { # moto's server speaks the CloudWatch API (PutMetricData, GetMetricData)
    if [ -n "${CLOUDWATCH_ENDPOINT:-}" ]; then return 0; fi
    local port="${SHARDWISE_CLOUDWATCH_PORT:-15917}" venv="$SERVICES_DIR/moto-venv"
    if [ ! -x "$venv/bin/moto_server" ] || ! "$venv/bin/pip" show moto 2>/dev/null | grep -q "^Version: $MOTO_VERSION$"; then
        command -v python3 >/dev/null || apt_install python3 python3-venv
        say "installing moto[server]==$MOTO_VERSION into $venv"
        python3 -m venv "$venv" || { apt_install python3-venv && python3 -m venv "$venv"; }
        "$venv/bin/pip" install -q "moto[server]==$MOTO_VERSION" >/dev/null
    fi
    if ! port_free "$port"; then
        say "port $port is busy; set SHARDWISE_CLOUDWATCH_PORT or CLOUDWATCH_ENDPOINT"
        return 1
    fi
    say "starting moto $MOTO_VERSION (CloudWatch) on 127.0.0.1:$port"
    "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$SERVICES_DIR/moto.log" 2>&1 &
    STARTED_PIDS+=("$!")
    wait_until 60 moto moto_answers "$port" || return 1
    export CLOUDWATCH_ENDPOINT="http://127.0.0.1:$port"
}

ensure_kcl_clients() { # the real KCL MultiLang clients, without their jars: amazon-kclpy's sdist, npm aws-kcl
    local dir="$SERVICES_DIR/kcl-clients"
    if [ -z "${KCLPY_DIR:-}" ]; then
        local kclpy="$dir/amazon_kclpy-$KCLPY_VERSION"
        if [ ! -f "$kclpy/samples/sample_kclpy_app.py" ]; then
            command -v python3 >/dev/null || apt_install python3 python3-venv
            mkdir -p "$dir"
            say "downloading amazon-kclpy $KCLPY_VERSION (source only: its jars are not needed)"
            # pip of the moto venv (made by ensure_cloudwatch) or the system's.
            local pip="$SERVICES_DIR/moto-venv/bin/pip"
            [ -x "$pip" ] || pip="python3 -m pip"
            $pip download -q --no-deps --no-binary :all: "amazon-kclpy==$KCLPY_VERSION" -d "$dir" >/dev/null
            tar -xzf "$dir/amazon_kclpy-$KCLPY_VERSION.tar.gz" -C "$dir"
        fi
        export KCLPY_DIR="$kclpy"
    fi
    if [ -z "${AWS_KCL_NODE_PATH:-}" ]; then
        local prefix="$SERVICES_DIR/npm/aws-kcl"
        if ! grep -Eq "\"version\" ?: ?\"$AWS_KCL_VERSION\"" "$prefix/node_modules/aws-kcl/package.json" 2>/dev/null; then
            ensure_node
            mkdir -p "$prefix"
            say "installing aws-kcl@$AWS_KCL_VERSION with npm (its library needs no jars)"
            npm install --silent --no-audit --no-fund --no-save --ignore-scripts --prefix "$prefix" "aws-kcl@$AWS_KCL_VERSION" >/dev/null
        fi
        export AWS_KCL_NODE_PATH="$prefix/node_modules"
    fi
}

services_stop() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    STARTED_PIDS=()
}
