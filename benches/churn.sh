#!/usr/bin/env bash
# Churn soak: our `moq relay` under `moq bench --churn` (subscribers that connect, subscribe,
# read a few frames and disconnect, over and over) for DURATION seconds, then IDLE seconds
# with no session. Every second it samples the relay's /metrics: live heap (glibc
# mallinfo2), resident memory, open descriptors, sessions, tracks and cached groups.
# Writes a CSV and a PNG plot (matplotlib, installed with pip if missing).
#
# Runnable by hand; the one-minute in-process version with assertions is the `churn` test
# in moq-tokio/tests/live_heap.rs.
#
# Usage:
#   benches/churn.sh                          # 5 minutes of churn, 20 s idle
#   DURATION=60 benches/churn.sh
#
# Environment (defaults in brackets):
#   DURATION  seconds of churn                                  [300]
#   IDLE      seconds sampled after the churn ends              [20]
#   WORKERS   concurrent churning subscribers                   [16]
#   TRACKS    tracks of the one publisher                       [2]
#   FRAME_SIZE bytes per frame; RATE frames/s per track         [4096; 100]
#   PORT      UDP and HTTP port                                 [14900]
#   MOQ       our binary                                        [target/release/moq]
#   BUILD=0   skip `cargo build --release --bin moq`
#   OUT       output prefix (.csv, .png, .txt)     [benches/results/<date>-churn]
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-300}
IDLE=${IDLE:-20}
WORKERS=${WORKERS:-16}
TRACKS=${TRACKS:-2}
FRAME_SIZE=${FRAME_SIZE:-4096}
RATE=${RATE:-100}
PORT=${PORT:-14900}
MOQ=${MOQ:-target/release/moq}
OUT=${OUT:-benches/results/$(date +%F)-churn}

if [ "${BUILD:-1}" != 0 ]; then
  cargo build --release --bin moq
fi
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet matplotlib

"$MOQ" relay --listen "127.0.0.1:$PORT" --drain 0 --log warn >/dev/null 2>&1 &
relay=$!
trap 'kill -9 $relay 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  sleep 0.1
done

metric() { awk -v m="$1" '$1 == m { print $2 }' <<<"$2"; }
sessions() { awk '/^moq_sessions\{/ { s += $2 } END { print s + 0 }' <<<"$1"; }

echo "t,phase,heap_bytes,rss_bytes,fds,sessions,tracks,groups" >"$OUT.csv"
start=$(date +%s.%N)
sample() {
  local text now
  text=$(curl -sf "http://127.0.0.1:$PORT/metrics" || true)
  now=$(date +%s.%N)
  printf '%.1f,%s,%s,%s,%s,%s,%s,%s\n' "$(echo "$now - $start" | bc)" "$1" \
    "$(metric moq_heap_live_bytes "$text")" "$(metric process_resident_memory_bytes "$text")" \
    "$(metric process_open_fds "$text")" "$(sessions "$text")" \
    "$(metric moq_tracks "$text")" "$(metric moq_groups "$text")" >>"$OUT.csv"
}

sample baseline
"$MOQ" bench --url "moqt://localhost:$PORT/" --tls-disable-verify --log warn --churn \
  --subscribers "$WORKERS" --tracks "$TRACKS" --frame-size "$FRAME_SIZE" --rate "$RATE" \
  --duration "$DURATION" >"$OUT.txt" 2>&1 &
bench=$!
while kill -0 $bench 2>/dev/null; do
  sample churn
  sleep 1
done
wait $bench
for _ in $(seq "$IDLE"); do
  sample idle
  sleep 1
done
cat "$OUT.txt"

python3 - "$OUT" <<'EOF'
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
out = sys.argv[1]
rows = list(csv.DictReader(open(out + ".csv")))
num = lambda r, k: float(r[k]) if r[k] else float("nan")
t = [num(r, "t") for r in rows]
fig, (mem, conns) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
mem.plot(t, [num(r, "heap_bytes") / 1e6 for r in rows], label="live heap (mallinfo2)")
mem.plot(t, [num(r, "rss_bytes") / 1e6 for r in rows], label="RSS")
mem.set_ylabel("MB")
mem.legend(loc="upper left")
mem.set_title(open(out + ".txt").read().strip().splitlines()[-1])
conns.plot(t, [num(r, "sessions") for r in rows], label="sessions")
conns.plot(t, [num(r, "fds") for r in rows], label="open fds")
conns.plot(t, [num(r, "tracks") for r in rows], label="tracks")
conns.set_xlabel("seconds")
conns.legend(loc="upper left")
end = max(num(r, "t") for r in rows if r["phase"] == "churn")
for ax in (mem, conns):
    ax.axvline(end, color="grey", linestyle=":")
fig.tight_layout()
fig.savefig(out + ".png", dpi=90)
first = rows[0]
last = rows[-1]
print(f"baseline: heap {num(first, 'heap_bytes')/1e6:.1f} MB, RSS {num(first, 'rss_bytes')/1e6:.1f} MB, {first['fds']} fds")
churn = [r for r in rows if r["phase"] == "churn"]
print(f"churn peak: heap {max(num(r, 'heap_bytes') for r in churn)/1e6:.1f} MB, RSS {max(num(r, 'rss_bytes') for r in churn)/1e6:.1f} MB, {max(int(r['fds'] or 0) for r in churn)} fds")
print(f"after {len(rows) - len(churn) - 1} s idle: heap {num(last, 'heap_bytes')/1e6:.1f} MB, RSS {num(last, 'rss_bytes')/1e6:.1f} MB, {last['fds']} fds, {last['sessions']} sessions")
print(f"plot: {out}.png")
EOF
