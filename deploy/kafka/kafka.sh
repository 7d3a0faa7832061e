#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft, combined broker+controller) for CI
# integration tests. Jars come from Maven Central via ./pom.xml; nothing is
# written into the repo.
#
#   kafka.sh fetch                   resolve the jars into the cache (idempotent)
#   kafka.sh start <port> <datadir>  format storage + start broker, wait until ready
#   kafka.sh stop <datadir>          stop the broker started with that datadir
#
# Environment (all optional):
#   LOYALTY_KAFKA_CACHE            jar dir   (default ~/.cache/loyalty/kafka-<version>)
#   LOYALTY_KAFKA_CONTROLLER_PORT  KRaft controller port (default <port>+1)
#   LOYALTY_KAFKA_HEAP_OPTS        default "-Xms256m -Xmx768m"
#   LOYALTY_KAFKA_EXTRA_PROPS      extra server.properties lines, newline separated
#   LOYALTY_KAFKA_START_TIMEOUT    seconds to wait for readiness (default 120)
#   JAVA_HOME                      Java 17+ (else `java` on PATH)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/pom.xml"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n1)"
[[ -n "$KAFKA_VERSION" ]] || { echo "kafka.sh: cannot read kafka.version from $POM" >&2; exit 1; }
CACHE="${LOYALTY_KAFKA_CACHE:-$HOME/.cache/loyalty/kafka-$KAFKA_VERSION}"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"

die() { echo "kafka.sh: $*" >&2; exit 1; }
usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

cache_complete() {
    [[ -f "$CACHE/.complete" && "$(cat "$CACHE/.complete")" == "$(pom_hash)" ]]
}

cmd_fetch() {
    if cache_complete; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found on PATH"
    mkdir -p "$(dirname "$CACHE")"
    local tmp
    tmp="$(mktemp -d "$CACHE.tmp.XXXXXX")"
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    echo "kafka.sh: fetching Kafka $KAFKA_VERSION jars into $CACHE" >&2
    # Maven output (incl. its stray ANSI codes) is only shown on failure.
    if ! mvn -q -B -f "$POM" \
        org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DincludeScope=runtime \
        -DoutputDirectory="$tmp/lib" >"$tmp/mvn.log" 2>&1; then
        cat "$tmp/mvn.log" >&2
        die "mvn dependency:copy-dependencies failed"
    fi
    [[ -f "$tmp/lib/kafka_2.13-$KAFKA_VERSION.jar" ]] \
        || die "kafka_2.13-$KAFKA_VERSION.jar missing after fetch"
    rm -rf "$CACHE"
    mv "$tmp/lib" "$CACHE"
    pom_hash >"$CACHE/.complete"
    rm -rf "$tmp"
    trap - EXIT
}

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Real readiness probe: send a Kafka ApiVersions v0 request and expect a
# response with our correlation id and error_code 0. Only succeeds once the
# broker's request handlers are running.
kafka_api_ready() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        # size=15 | api_key=18 | api_version=0 | correlation_id="KAFK" | client_id="probe"
        printf '\x00\x00\x00\x0f\x00\x12\x00\x00KAFK\x00\x05probe' >&3
        resp="$(timeout 5 head -c 10 <&3 | od -An -tx1 | tr -d ' \n')"
        # 4 bytes size, 4 bytes correlation id, 2 bytes error_code
        [[ "${resp:8:8}" == "4b41464b" && "${resp:16:4}" == "0000" ]]
    ) 2>/dev/null
}

# True if $1 is a live process that is a kafka.Kafka started with config $2.
is_our_kafka() {
    local pid="$1" props="$2" cmdline
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    cmdline="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" || return 1
    [[ "$cmdline" == *kafka.Kafka*"$props"* ]]
}

cmd_start() {
    [[ $# -eq 2 ]] || usage
    local port="$1" datadir="$2"
    [[ "$port" =~ ^[0-9]+$ ]] || die "port must be a number: $port"
    local cport="${LOYALTY_KAFKA_CONTROLLER_PORT:-$((port + 1))}"
    local timeout="${LOYALTY_KAFKA_START_TIMEOUT:-120}"
    local heap="${LOYALTY_KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"

    command -v "$JAVA" >/dev/null || die "java not found (set JAVA_HOME)"
    cmd_fetch

    mkdir -p "$datadir"
    datadir="$(cd "$datadir" && pwd)"
    local props="$datadir/server.properties"
    local log="$datadir/kafka.log"
    local pidfile="$datadir/kafka.pid"

    if [[ -f "$pidfile" ]] && is_our_kafka "$(cat "$pidfile")" "$props"; then
        die "already running (pid $(cat "$pidfile")) for $datadir"
    fi
    rm -f "$pidfile"
    port_open "$port" && die "port $port is already in use"
    port_open "$cport" && die "controller port $cport is already in use"

    cat >"$props" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$datadir/data
num.partitions=3
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
    if [[ -n "${LOYALTY_KAFKA_EXTRA_PROPS:-}" ]]; then
        printf '%s\n' "$LOYALTY_KAFKA_EXTRA_PROPS" >>"$props"
    fi

    cat >"$datadir/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
EOF

    local jvm
    read -r -a jvm <<<"$heap"
    jvm+=(
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExplicitGCInvokesConcurrent
        -Djava.awt.headless=true -Dlog4j2.shutdownHookEnabled=false
        -Dlog4j2.configurationFile="$datadir/log4j2.properties"
    )
    local cp="$CACHE/*"

    # Format once (random cluster id); an already formatted datadir is reused.
    if [[ ! -f "$datadir/data/meta.properties" ]]; then
        local cluster_id
        cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        # An id starting with "-" would be read as an option: start it with a letter.
        cluster_id="A${cluster_id:1}"
        "$JAVA" "${jvm[@]}" -cp "$cp" kafka.tools.StorageTool format \
            --ignore-formatted -t "$cluster_id" -c "$props" >>"$log" 2>&1 \
            || { tail -n 50 "$log" >&2; die "storage format failed"; }
    fi

    # Only log lines written from here on count (the log is appended to).
    local log_offset
    log_offset="$(stat -c %s "$log" 2>/dev/null || echo 0)"
    echo "kafka.sh: starting Kafka $KAFKA_VERSION on 127.0.0.1:$port (controller $cport), data $datadir" >&2
    (
        # Do not leak the caller's extra fds (pipes) into the daemon.
        for fd in "/proc/$BASHPID/fd"/*; do
            fd="${fd##*/}"
            if [[ "$fd" -gt 2 ]]; then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        exec "$JAVA" "${jvm[@]}" -cp "$cp" kafka.Kafka "$props"
    ) </dev/null >>"$log" 2>&1 &
    local pid=$!
    echo "$pid" >"$pidfile"

    local start=$SECONDS
    while :; do
        if ! is_our_kafka "$pid" "$props"; then  # also catches an unreaped zombie
            echo "kafka.sh: broker exited during startup; last log lines:" >&2
            tail -n 60 "$log" >&2
            rm -f "$pidfile"
            exit 1
        fi
        if grep -q 'Kafka Server started' < <(tail -c +"$((log_offset + 1))" "$log") \
            && kafka_api_ready "$port"; then
            echo "kafka.sh: ready after $((SECONDS - start))s (pid $pid)" >&2
            return 0
        fi
        if ((SECONDS - start >= timeout)); then
            echo "kafka.sh: not ready after ${timeout}s; last log lines:" >&2
            tail -n 60 "$log" >&2
            cmd_stop "$datadir" || true
            exit 1
        fi
        sleep 0.5
    done
}

cmd_stop() {
    [[ $# -eq 1 ]] || usage
    local datadir="$1"
    [[ -d "$datadir" ]] || die "no such datadir: $datadir"
    datadir="$(cd "$datadir" && pwd)"
    local pidfile="$datadir/kafka.pid" props="$datadir/server.properties"
    if [[ ! -f "$pidfile" ]]; then
        echo "kafka.sh: no pid file in $datadir, nothing to stop" >&2
        return 0
    fi
    local pid
    pid="$(cat "$pidfile")"
    if ! is_our_kafka "$pid" "$props"; then
        echo "kafka.sh: pid $pid is not running (or not our broker); removing stale pid file" >&2
        rm -f "$pidfile"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 60; i++)); do  # 30 s for a clean shutdown
        is_our_kafka "$pid" "$props" || break
        sleep 0.5
    done
    if is_our_kafka "$pid" "$props"; then
        echo "kafka.sh: pid $pid ignored SIGTERM for 30s, sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 20; i++)); do
            is_our_kafka "$pid" "$props" || break
            sleep 0.5
        done
    fi
    rm -f "$pidfile"
    echo "kafka.sh: stopped pid $pid" >&2
}

case "${1:-}" in
    fetch) shift; [[ $# -eq 0 ]] || usage; cmd_fetch ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    *) usage ;;
esac
