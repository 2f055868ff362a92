#!/usr/bin/env bash
# Relay benchmark: our `moq relay` vs the reference `moq-relay`, driven by `moq bench`.
#
# Runnable by hand; not part of CI. For every combination of relay, subscriber count N,
# frame size and mode it starts a FRESH relay on loopback, runs one `moq bench`
# (1 publisher, 1 track -> N subscribers) against it, and records:
#   - delivered frames/s and latency p50/p99 (from the bench's JSON);
#   - relay CPU seconds per delivered GB: relay utime+stime from /proc/PID/stat, sampled
#     right after the bench's warm-up and again right before the end of its measurement
#     window (the bench logs each connection; its window starts WARMUP s after the last one;
#     we sample SAMPLE_MARGIN s inside both ends), divided by the
#     payload bytes the subscribers received (GB = 1e9 bytes). To be robust to small
#     misalignment of the two windows it is computed as
#       (relay CPU s / sample wall s) / (delivered bytes/s / 1e9);
#   - the relay's peak RSS (VmHWM from /proc/PID/status) at the end of the run.
#
# Usage:
#   benches/relay.sh                      # whole matrix: 32 runs, ~7-8 min on 2 cores
#   NS="1 100" SIZES=1024 MODES=rate RELAYS=moq benches/relay.sh
#
# Environment (defaults in brackets):
#   RELAYS   relays to test: "moq" (ours, one thread per core), "moq:N" (ours on N threads)
#            and/or "moq-relay"                                     ["moq moq-relay"]
#   NS       subscriber counts                                      ["1 10 100 500"]
#   SIZES    frame payload sizes in bytes                           ["1024 16384"]
#   MODES    "rate" (RATE frames/s per track) and/or "saturate"    ["rate saturate"]
#   SCHEMES  how clients reach the relay: "moqt" (raw QUIC), "https" (WebTransport) and/or
#            "ws" (WebSocket with QMux over TCP, on the relay's HTTP port)
#                                                                   ["moqt"]
#   RATE     frames/s for the fixed-rate mode                       [100]
#   FRAMES_PER_GROUP                                               [30]
#   DURATION measured seconds; WARMUP unmeasured seconds            [8; 2]
#   MAX_LATENCY subscriber max latency, ms                          [5000]
#   SETUP_TIMEOUT seconds allowed for all bench connections         [120]
#   SAMPLE_MARGIN CPU sampling starts/ends this many s inside the bench's window [0.25]
#   EXIT_TIMEOUT seconds the bench may take to report after its window [20]
#   PORT     first UDP port (one per run, incremented)              [14600]
#   MOQ      our binary                                  [target/release/moq]
#   MOQ_RELAY reference relay                            [moq-relay in PATH or ~/.cargo/bin]
#   BUILD=0  skip `cargo build --release --bin moq`
#   RESULTS  JSON-lines output file                 [/tmp/moq-relay-bench-<time>.jsonl]
#   PERF_DIR if set, `perf record -g` the relay during each measurement window into
#            this directory (perturbs the CPU numbers; use for profiling only)
#   LOAD_MAX if set, before each run wait (up to LOAD_WAIT s, default 120) for the
#            1-minute load average to drop below LOAD_MAX
#   RELAY_LOG log level for both relays                             [warn]
#   RELAY_CPUS, BENCH_CPUS  if set, pin the relay / the bench with `taskset -c` (e.g. 0 and 1)
#   BENCH_PROCESSES  spread the bench's subscribers over this many processes      [1]
#   REPEAT   run the whole matrix this many times (each relay side by side with the other in
#            every round) and end with a table of medians and ranges per row  [1]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MOQ=${MOQ:-$ROOT/target/release/moq}
MOQ_RELAY=${MOQ_RELAY:-$(command -v moq-relay || echo "$HOME/.cargo/bin/moq-relay")}
RELAYS=${RELAYS:-"moq moq-relay"}
NS=${NS:-"1 10 100 500"}
SIZES=${SIZES:-"1024 16384"}
MODES=${MODES:-"rate saturate"}
SCHEMES=${SCHEMES:-"moqt"}
RATE=${RATE:-100}
FRAMES_PER_GROUP=${FRAMES_PER_GROUP:-30}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
MAX_LATENCY=${MAX_LATENCY:-5000}
SETUP_TIMEOUT=${SETUP_TIMEOUT:-120}
EXIT_TIMEOUT=${EXIT_TIMEOUT:-20}
SAMPLE_MARGIN=${SAMPLE_MARGIN:-0.25}
PORT=${PORT:-14600}
BUILD=${BUILD:-1}
RESULTS=${RESULTS:-/tmp/moq-relay-bench-$(date +%Y%m%d-%H%M%S).jsonl}
PERF_DIR=${PERF_DIR:-}
LOAD_MAX=${LOAD_MAX:-}
LOAD_WAIT=${LOAD_WAIT:-120}
RELAY_LOG=${RELAY_LOG:-warn}
RELAY_CPUS=${RELAY_CPUS:-}
BENCH_CPUS=${BENCH_CPUS:-}
RELAY_PIN=()
BENCH_PIN=()
[[ -n $RELAY_CPUS ]] && RELAY_PIN=(taskset -c "$RELAY_CPUS")
[[ -n $BENCH_CPUS ]] && BENCH_PIN=(taskset -c "$BENCH_CPUS")

TICK=$(getconf CLK_TCK)
WORK=$(mktemp -d /tmp/moq-relay-bench.XXXXXX)
RELAY_PID=""
BENCH_PID=""
BENCH_CHILD=""
PERF_PID=""

cleanup() {
    local pid
    for pid in "$PERF_PID" "$BENCH_CHILD" "$BENCH_PID" "$RELAY_PID"; do
        if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    PERF_PID="" BENCH_CHILD="" BENCH_PID="" RELAY_PID=""
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# Sleep in the background so a signal's trap runs at once.
nap() {
    sleep "$1" &
    wait $! || true
}
log() { echo "[relay.sh] $*" >&2; }

# 500 client connections in one bench process: one UDP socket each, plus epoll etc.
want_fds=$((4 * 500 + 256))
if [[ $(ulimit -n) != unlimited && $(ulimit -n) -lt $want_fds ]]; then
    hard=$(ulimit -Hn)
    if [[ $hard == unlimited || $hard -ge $want_fds ]]; then ulimit -n "$want_fds"; else ulimit -n "$hard"; fi
fi
log "open files limit: $(ulimit -n)"
for k in rmem_max wmem_max; do
    v=$(cat /proc/sys/net/core/$k 2>/dev/null || echo '?')
    log "net.core.$k = $v (moq-relay asks for 8 MiB UDP buffers; raise it by hand if needed)"
done

if [[ $BUILD == 1 && " $RELAYS " == *" moq "* ]]; then
    (cd "$ROOT" && cargo build --release --bin moq >&2)
fi
[[ -x $MOQ ]] || { log "missing $MOQ"; exit 1; }
if [[ " $RELAYS " == *" moq-relay "* ]]; then
    [[ -x $MOQ_RELAY ]] || { log "missing moq-relay ($MOQ_RELAY)"; exit 1; }
fi
[[ -n $PERF_DIR ]] && mkdir -p "$PERF_DIR"

# CPU ticks (utime + stime) of a process. Field 2 (comm) may contain spaces: cut after ')'.
cpu_ticks() {
    local stat rest f
    stat=$(<"/proc/$1/stat")
    rest=${stat##*) }
    # rest starts at field 3 (state); utime is field 14, stime 15 -> index 11, 12.
    read -r -a f <<<"$rest"
    echo $((f[11] + f[12]))
}
now_s() { date +%s.%N; }
vm_hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
udp_rcvbuf_errors() { awk '/^Udp:/ { if (h) {print $6; exit} h = 1 }' /proc/net/snmp; }
# Busy CPU ticks of the whole machine (user nice system irq softirq steal).
sys_busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# A numeric field of a one-line JSON object.
jnum() { sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" "$2"; }

# Is something listening on 127.0.0.1:$1/udp?
udp_listening() {
    local hex
    hex=$(printf '%04X' "$1")
    grep -q " 0100007F:$hex " /proc/net/udp 2>/dev/null
}

wait_load() {
    [[ -z $LOAD_MAX ]] && return 0
    local waited=0
    while awk -v l="$(load1)" -v m="$LOAD_MAX" 'BEGIN { exit !(l >= m) }'; do
        if ((waited >= LOAD_WAIT)); then
            log "load $(load1) still >= $LOAD_MAX after ${LOAD_WAIT}s; running anyway"
            return 0
        fi
        sleep 5
        waited=$((waited + 5))
    done
}

start_relay() { # relay port logfile
    case $1 in
        moq)
            "${RELAY_PIN[@]}" "$MOQ" --log "$RELAY_LOG" relay --listen "127.0.0.1:$2" --drain 0 >"$3" 2>&1 &
            ;;
        moq:*)
            "${RELAY_PIN[@]}" "$MOQ" --log "$RELAY_LOG" relay --listen "127.0.0.1:$2" --drain 0 \
                --threads "${1#moq:}" >"$3" 2>&1 &
            ;;
        moq-relay)
            "${RELAY_PIN[@]}" "$MOQ_RELAY" --listen "127.0.0.1:$2" --listen-tls-generate localhost \
                --auth-public '**' --web-http-listen "127.0.0.1:$2" --log-level "$RELAY_LOG" \
                >"$3" 2>&1 &
            ;;
        *) log "unknown relay $1"; exit 1 ;;
    esac
    RELAY_PID=$!
    local i
    for i in $(seq 100); do
        udp_listening "$2" && return 0
        kill -0 "$RELAY_PID" 2>/dev/null || break
        sleep 0.05
    done
    log "relay $1 did not start on port $2:"; cat "$3" >&2
    return 1
}

ROWS=()
REPEAT=${REPEAT:-1}
# Per row key (relay scheme n size mode): the runs' values, space-separated, for REPEAT > 1.
declare -A FPS_RUNS=() GB_RUNS=() RSS_RUNS=() P99_RUNS=() LOST_RUNS=()
run_one() { # relay n size mode scheme
    local relay=$1 n=$2 size=$3 mode=$4 scheme=${5:-moqt}
    local tag="$relay-$scheme-n$n-s$size-$mode"
    local rlog="$WORK/$tag.relay.log" bout="$WORK/$tag.bench.json" berr="$WORK/$tag.bench.err"
    PORT=$((PORT + 1))
    wait_load
    local load_before
    load_before=$(load1)

    start_relay "$relay" "$PORT" "$rlog" || return 0
    local mode_args=(--rate "$RATE")
    [[ $mode == saturate ]] && mode_args=(--saturate)
    local t_start
    t_start=$(now_s)
    timeout $((SETUP_TIMEOUT + WARMUP + DURATION + 30)) \
        "${BENCH_PIN[@]}" "$MOQ" --tls-disable-verify --log "warn,moq::common=info" bench \
        --url "$scheme://localhost:$PORT/" --publishers 1 --tracks 1 --subscribers "$n" \
        --frame-size "$size" "${mode_args[@]}" --frames-per-group "$FRAMES_PER_GROUP" \
        --duration "$DURATION" --warmup "$WARMUP" --max-latency "$MAX_LATENCY" --json \
        --processes "${BENCH_PROCESSES:-1}" >"$bout" 2>"$berr" &
    BENCH_PID=$!
    BENCH_CHILD=""  # the moq process itself (BENCH_PID is `timeout`)

    # The bench connects N subscribers then 1 publisher, then warms up WARMUP s.
    local want=$((n + 1)) got=0 ok=1
    while :; do
        [[ -z $BENCH_CHILD ]] && BENCH_CHILD=$(pgrep -P "$BENCH_PID" | head -n1 || true)
        got=$(grep -c ' connected' "$berr" 2>/dev/null || true)
        ((got >= want)) && break
        if ! kill -0 "$BENCH_PID" 2>/dev/null; then ok=0; break; fi
        if awk -v a="$(now_s)" -v b="$t_start" -v t="$SETUP_TIMEOUT" 'BEGIN { exit !(a - b > t) }'; then
            ok=0; break
        fi
        sleep 0.05
    done
    local setup_s
    setup_s=$(awk -v a="$(now_s)" -v b="$t_start" 'BEGIN { printf "%.2f", a - b }')

    local cpu0=0 cpu1=0 w0=0 w1=0 udp0=0 udp1=0 bcpu0=0 bcpu1=0 sys0=0 sys1=0
    local inner
    inner=$(awk -v d="$DURATION" -v m="$SAMPLE_MARGIN" 'BEGIN { x = d - 2 * m; if (x < 0.5) x = 0.5; print x }')
    if ((ok)); then
        # Sample strictly inside the bench's window (it exits right at its end).
        nap "$(awk -v w="$WARMUP" -v m="$SAMPLE_MARGIN" 'BEGIN { print w + m }')"
        cpu0=$(cpu_ticks "$RELAY_PID"); w0=$(now_s); udp0=$(udp_rcvbuf_errors)
        bcpu0=$(cpu_ticks "$BENCH_CHILD" 2>/dev/null || echo 0); sys0=$(sys_busy_ticks)
        if [[ -n $PERF_DIR ]]; then
            perf record -g -p "$RELAY_PID" -o "$PERF_DIR/$tag.perf.data" -- sleep "$inner" \
                >"$WORK/$tag.perf.log" 2>&1 &
            PERF_PID=$!
        fi
        nap "$inner"
        cpu1=$(cpu_ticks "$RELAY_PID"); w1=$(now_s); udp1=$(udp_rcvbuf_errors)
        bcpu1=$(cpu_ticks "$BENCH_CHILD" 2>/dev/null || echo 0); sys1=$(sys_busy_ticks)
        if [[ -n $PERF_PID ]]; then
            wait "$PERF_PID" || true
            PERF_PID=""
        fi
    fi
    # The bench should print and exit right after its window; a hang is reported as rc 124.
    local brc=0 hung=0 waited=0
    if ((ok)) && [[ -n $BENCH_CHILD ]]; then
        while kill -0 "$BENCH_CHILD" 2>/dev/null && ((waited < EXIT_TIMEOUT * 10)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        if kill -0 "$BENCH_CHILD" 2>/dev/null; then
            hung=1
            kill -KILL "$BENCH_CHILD" 2>/dev/null || true
        fi
    fi
    wait "$BENCH_PID" || brc=$?
    ((hung)) && brc=124
    BENCH_PID="" BENCH_CHILD=""
    local hwm
    hwm=$(vm_hwm_kb "$RELAY_PID" 2>/dev/null || echo 0)
    kill -KILL "$RELAY_PID" 2>/dev/null || true
    wait "$RELAY_PID" 2>/dev/null || true
    RELAY_PID=""

    local bench_json
    bench_json=$(head -n1 "$bout" 2>/dev/null || true)
    if ! ((ok)) || [[ $brc != 0 || $bench_json != \{* ]]; then
        local why
        why=$({ grep -v ' connected' "$berr" || true; } | tail -n 3 | tr '\n"' ' _' | sed 's/\x1b\[[0-9;]*m//g')
        ((brc == 124)) && why="bench did not finish within ${EXIT_TIMEOUT}s of its window; $why"
        log "$tag FAILED (bench rc=$brc, $got/$want connected after ${setup_s}s): $why"
        printf '{"relay":"%s","n":%d,"frame_size":%d,"mode":"%s","error":"bench rc=%s connected %s/%s: %s"}\n' \
            "$relay" "$n" "$size" "$mode" "$brc" "$got" "$want" "$why" >>"$RESULTS"
        ROWS+=("| $relay | $n | $((size / 1024)) KiB | $mode | FAILED | | | | | | | |")
        return 0
    fi

    local fps bps p50 p99 lost cpu_s win_s util s_per_gb rss_mb butil outil
    fps=$(jnum frames_per_s "$bout"); bps=$(jnum bytes_per_s "$bout")
    p50=$(jnum latency_ms_p50 "$bout"); p99=$(jnum latency_ms_p99 "$bout")
    lost=$(jnum groups_lost "$bout")
    cpu_s=$(awk -v a="$cpu0" -v b="$cpu1" -v t="$TICK" 'BEGIN { printf "%.2f", (b - a) / t }')
    win_s=$(awk -v a="$w0" -v b="$w1" 'BEGIN { printf "%.3f", b - a }')
    util=$(awk -v c="$cpu_s" -v w="$win_s" 'BEGIN { printf "%.1f", 100 * c / w }')
    butil=$(awk -v a="$bcpu0" -v b="$bcpu1" -v t="$TICK" -v w="$win_s" \
        'BEGIN { printf "%.1f", 100 * (b - a) / t / w }')
    # The bench gone before the second sample: unknown (and "others" is then overstated).
    ((bcpu1 < bcpu0)) && butil=null && bcpu1=$bcpu0
    # Everything else on the machine (other users of the CPUs) during the window.
    outil=$(awk -v s="$((sys1 - sys0))" -v r="$((cpu1 - cpu0))" -v b="$((bcpu1 - bcpu0))" \
        -v t="$TICK" -v w="$win_s" 'BEGIN { o = (s - r - b) / t / w; if (o < 0) o = 0; printf "%.1f", 100 * o }')
    s_per_gb=$(awk -v c="$cpu_s" -v w="$win_s" -v b="$bps" \
        'BEGIN { if (b > 0) printf "%.2f", (c / w) / (b / 1e9); else print "inf" }')
    rss_mb=$(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }')

    local extra
    extra=$(printf '"relay":"%s","scheme":"'"$scheme"'","n":%d,"frame_size":%d,"mode":"%s","rate":%s,"setup_s":%s,"relay_cpu_s":%s,"cpu_window_s":%s,"relay_cpu_pct":%s,"cpu_s_per_gb":%s,"peak_rss_kb":%s,"udp_rcvbuf_errors":%s,"bench_cpu_pct":%s,"other_cpu_pct":%s,"load1_before":%s,"cpu_scope":"measurement window"' \
        "$relay" "$n" "$size" "$mode" "$([[ $mode == saturate ]] && echo null || echo "$RATE")" \
        "$setup_s" "$cpu_s" "$win_s" "$util" \
        "$([[ $s_per_gb == inf ]] && echo null || echo "$s_per_gb")" \
        "$hwm" "$((udp1 - udp0))" "$butil" "$outil" "$load_before")
    echo "{$extra,${bench_json#\{}" >>"$RESULTS"
    ROWS+=("| $relay ($scheme) | $n | $((size / 1024)) KiB | $mode | $fps | $s_per_gb | $rss_mb | $p50 | $p99 | $util | $butil | $lost |")
    local key="$relay ($scheme)|$n|$((size / 1024)) KiB|$mode"
    FPS_RUNS[$key]+="$fps "; GB_RUNS[$key]+="$s_per_gb "; RSS_RUNS[$key]+="$rss_mb "
    P99_RUNS[$key]+="$p99 "; LOST_RUNS[$key]+="$lost "
    log "$tag: $fps frames/s, $s_per_gb CPU s/GB ($util% CPU; bench $butil%, others $outil%), RSS $rss_mb MB, p50 $p50 ms, p99 $p99 ms, lost groups $lost, setup ${setup_s}s, load before $load_before"
}

log "results: $RESULTS (logs in $WORK)"
log "matrix: relays [$RELAYS] N [$NS] sizes [$SIZES] modes [$MODES]; rate $RATE/s; warmup ${WARMUP}s, duration ${DURATION}s"
for round in $(seq "$REPEAT"); do
    ((REPEAT > 1)) && log "round $round of $REPEAT"
    for n in $NS; do
        for size in $SIZES; do
            for mode in $MODES; do
                for relay in $RELAYS; do
                    for scheme in $SCHEMES; do
                        run_one "$relay" "$n" "$size" "$mode" "$scheme"
                    done
                done
            done
        done
    done
done

# "median (min-max)" of the numbers given (non-numbers, e.g. a failed run's, are skipped).
spread() {
    tr ' ' '\n' <<<"$*" | grep -E '^[0-9.]+$' | sort -g | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "-"; exit }
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%g (%g-%g)", m, v[1], v[NR]
        }'
}

echo
echo "| relay | N | frame | mode | delivered frames/s | CPU s/GB | peak RSS MB | p50 ms | p99 ms | relay CPU % | bench CPU % | groups lost |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
if ((REPEAT > 1)); then
    echo
    echo "Medians (min-max) of $REPEAT runs per row:"
    echo
    echo "| relay | N | frame | mode | delivered frames/s | CPU s/GB | peak RSS MB | p99 ms | groups lost |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for n in $NS; do
        for size in $SIZES; do
            for mode in $MODES; do
                for relay in $RELAYS; do
                    for scheme in $SCHEMES; do
                        key="$relay ($scheme)|$n|$((size / 1024)) KiB|$mode"
                        echo "| ${key//|/ | } | $(spread "${FPS_RUNS[$key]:-}") | $(spread "${GB_RUNS[$key]:-}") | $(spread "${RSS_RUNS[$key]:-}") | $(spread "${P99_RUNS[$key]:-}") | $(spread "${LOST_RUNS[$key]:-}") |"
                    done
                done
            done
        done
    done
fi
echo
echo "Fixed rate = $RATE frames/s on 1 track; CPU s/GB = relay CPU per 1e9 delivered payload bytes,"
echo "sampled over the ${DURATION}s measurement window (after ${WARMUP}s warm-up). Raw JSON: $RESULTS"
