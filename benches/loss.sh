#!/usr/bin/env bash
# Latency under packet loss: WebTransport (QUIC, one stream per group) vs WebSocket (QMux over
# one TCP connection, where a lost segment holds back every stream behind it).
#
# Runnable by hand as root; not part of CI. It creates two network namespaces joined by a
# veth pair, shapes both directions with `tc netem` (DELAY one way, LOSS random loss) or, where
# the kernel has no netem, drops LOSS % of packets at random with nftables (no added delay), runs
# our relay in one namespace and `moq bench` (publisher and subscriber, so every frame crosses
# the lossy link twice) in the other, over each scheme and loss rate, and prints the frame
# latency percentiles and the groups lost. Everything it creates is removed on exit.
#
# Usage:
#   sudo benches/loss.sh
#   LOSSES="0 1 5" DELAY=25 RATE=30 SIZE=4096 sudo -E benches/loss.sh
#
# Environment (defaults in brackets):
#   LOSSES   loss percentages on each direction              ["0 0.5 2"]
#   DELAY    one-way delay in ms on each direction           [20]
#   SCHEMES  "https" (WebTransport) and/or "ws" (WebSocket)  ["https ws"]
#   RATE     frames/s per track; SIZE frame bytes; N subscribers; TRACKS per broadcast
#                                                            [30; 4096; 1; 1]
#   DURATION measured s; WARMUP s                            [10; 2]
#   MOQ      our binary                                      [target/release/moq]
#   RESULTS  JSON-lines output file           [/tmp/moq-loss-bench-<time>.jsonl]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MOQ=${MOQ:-$ROOT/target/release/moq}
LOSSES=${LOSSES:-"0 0.5 2"}
DELAY=${DELAY:-20}
SCHEMES=${SCHEMES:-"https ws"}
RATE=${RATE:-30}
SIZE=${SIZE:-4096}
N=${N:-1}
TRACKS=${TRACKS:-1}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
RESULTS=${RESULTS:-/tmp/moq-loss-bench-$(date +%Y%m%d-%H%M%S).jsonl}
NS_RELAY=moq-loss-relay
NS_CLIENT=moq-loss-client
RELAY_IP=10.77.0.1
CLIENT_IP=10.77.0.2
PORT=4443

log() { printf '%s\n' "$*" >&2; }

cleanup() {
    [[ -n ${RELAY_PID:-} ]] && kill "$RELAY_PID" 2>/dev/null || true
    ip netns del "$NS_RELAY" 2>/dev/null || true
    ip netns del "$NS_CLIENT" 2>/dev/null || true
}
trap cleanup EXIT

[[ -x $MOQ ]] || { log "build first: cargo build --release --bin moq"; exit 1; }
cleanup
ip netns add "$NS_RELAY"
ip netns add "$NS_CLIENT"
ip link add veth-moq-r type veth peer name veth-moq-c
ip link set veth-moq-r netns "$NS_RELAY"
ip link set veth-moq-c netns "$NS_CLIENT"
ip -n "$NS_RELAY" addr add "$RELAY_IP/24" dev veth-moq-r
ip -n "$NS_CLIENT" addr add "$CLIENT_IP/24" dev veth-moq-c
for ns in "$NS_RELAY" "$NS_CLIENT"; do ip -n "$ns" link set lo up; done
ip -n "$NS_RELAY" link set veth-moq-r up
ip -n "$NS_CLIENT" link set veth-moq-c up

ip netns exec "$NS_RELAY" "$MOQ" --log warn relay --listen "$RELAY_IP:$PORT" --drain 0 \
    >/tmp/moq-loss-relay.log 2>&1 &
RELAY_PID=$!
sleep 1

NETEM=1
if ! ip netns exec "$NS_RELAY" tc qdisc replace dev veth-moq-r root netem delay 1ms 2>/dev/null; then
    NETEM=0
    command -v nft >/dev/null || { log "no netem and no nft: apt-get install nftables"; exit 1; }
    log "this kernel has no netem: loss with nftables, no added delay"
    DELAY=0
fi

shape() { # loss%
    local dev ns
    for pair in "$NS_RELAY veth-moq-r" "$NS_CLIENT veth-moq-c"; do
        read -r ns dev <<<"$pair"
        if ((NETEM)); then
            ip netns exec "$ns" tc qdisc replace dev "$dev" root netem \
                delay "${DELAY}ms" loss "$1%" limit 10000
        else
            # Per mille, so fractional percentages work.
            local permille
            permille=$(awk -v l="$1" 'BEGIN { printf "%d", l * 10 }')
            ip netns exec "$ns" nft delete table inet moqloss 2>/dev/null || true
            ip netns exec "$ns" nft add table inet moqloss
            ip netns exec "$ns" nft "add chain inet moqloss out { type filter hook output priority 0; }"
            ip netns exec "$ns" nft add rule inet moqloss out oifname "$dev" numgen random mod 1000 \< "$permille" drop
        fi
    done
}

printf '| scheme | loss each way | one-way delay | frames/s | latency p50 | p99 | max | groups lost |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for loss in $LOSSES; do
    shape "$loss"
    for scheme in $SCHEMES; do
        out=$(ip netns exec "$NS_CLIENT" timeout $((DURATION + WARMUP + 60)) "$MOQ" \
            --tls-disable-verify --log error bench --url "$scheme://$RELAY_IP:$PORT/" \
            --publishers 1 --tracks "$TRACKS" --subscribers "$N" --frame-size "$SIZE" --rate "$RATE" \
            --frames-per-group "$RATE" --duration "$DURATION" --warmup "$WARMUP" \
            --max-latency 10000 --json 2>/dev/null || true)
        if [[ -z $out ]]; then
            log "bench failed: $scheme loss $loss%"
            continue
        fi
        printf '{"scheme":"%s","loss_pct":%s,"delay_ms":%s,"tracks":%s,"rate":%s,"frame_size":%s,%s\n' \
            "$scheme" "$loss" "$DELAY" "$TRACKS" "$RATE" "$SIZE" "${out#\{}" >>"$RESULTS"
        python3 - "$scheme" "$loss" "$DELAY" "$out" <<'EOF'
import json, sys
scheme, loss, delay, raw = sys.argv[1:]
d = json.loads(raw)
print(f"| {scheme} | {loss} % | {delay} ms | {d['frames_per_s']:.1f} | {d['latency_ms_p50']:.1f} ms "
      f"| {d['latency_ms_p99']:.1f} ms | {d['latency_ms_max']:.1f} ms | {d['groups_lost']} |")
EOF
    done
done
log "results: $RESULTS"
