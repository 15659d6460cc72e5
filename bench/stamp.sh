#!/usr/bin/env bash
# STAMP benchmarks (issue 14), one run, printed with the load average beside each figure:
#  1. round trip on loopback: `loopscope stamp` beside `loopscope ping udp://` and iputils ping,
#     COUNT probes each at INTERVAL, one after the other (goal: STAMP p50 <= 1.1 x ping udp://);
#  2. the reflector's rate on one core: `reflect --stamp` pinned to CPU 0, examples/stamp_load
#     (Rust, sendmmsg/recvmmsg, a window of 1024 outstanding) sending 44-octet requests from
#     CPU 1 for SECONDS (goal: >= 500,000 answered a second);
#  3. 100,000 packets a second for SECONDS from our sender (CPU 1) to the reflector (CPU 0):
#     the reflector's p99 residence (goal <= 20 us), and the sender's schedule: every packet
#     sent, none skipped, p99 lateness against start + k x interval (goal <= 5 us).
# Release binaries (built if missing) unless LOOPSCOPE_BIN / STAMP_LOAD_BIN name others.
# Usage: bench/stamp.sh [COUNT] [INTERVAL_S] [SECONDS]   (default 2000 0.001 10)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-2000}
interval=${2:-0.001}
seconds=${3:-10}
bin=${LOOPSCOPE_BIN:-$PWD/target/release/loopscope}
[ -x "$bin" ] || cargo build --release -q -p loopscope
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
load() { cut -d' ' -f1-3 /proc/loadavg; }
wait_listening() { until grep -qsE 'reflecting on|listening on|"listening"' "$1"; do sleep 0.05; done; }
# Ends a reflector with SIGINT and waits for it (in this shell: `wait` in a subshell would not).
finish() { kill -INT "$1"; wait "$1" 2>/dev/null || true; }

echo "== 1. round trip on loopback ($count probes at ${interval}s; load $(load))"
"$bin" stamp --reflect udp://127.0.0.1:18620 > "$work/stamp.log" 2>&1 & pids+=($!)
"$bin" reflect udp://127.0.0.1:18007 --rate-limit 0 > "$work/reflect.log" 2>&1 & pids+=($!)
wait_listening "$work/stamp.log"; wait_listening "$work/reflect.log"
stamp=$("$bin" --json stamp udp://127.0.0.1:18620 -c "$count" -i "${interval}s" -q | tail -1 || true)
lping=$("$bin" --json ping udp://127.0.0.1:18007 -c "$count" -i "$interval" -q | tail -1 || true)
iping=$(ping -c "$count" -i "$interval" -q 127.0.0.1 | tail -1)
python3 - "$stamp" "$lping" "$iping" <<'PY'
import json, sys
stamp, lping, iping = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
mn, avg, mx, mdev = [float(x) for x in iping.split('=')[1].split()[0].split('/')]
print(f"stamp (kernel T1/T4: {stamp['timestamp_source']}): rtt p50 {stamp['rtt_p50_us']:.1f} us, min {stamp['rtt_min_us']:.1f}, p99 {stamp['rtt_p99_us']:.1f}; rtt_net p50 {stamp['rtt_net_p50_us']:.1f}; {stamp['received']}/{stamp['transmitted']}")
print(f"loopscope ping udp://: rtt p50 {lping['rtt_p50_us']:.1f} us, min {lping['rtt_min_us']:.1f}, p99 {lping['rtt_p99_us']:.1f}")
print(f"iputils ping 127.0.0.1: min {mn*1000:.1f} us, avg {avg*1000:.1f} us, max {mx*1000:.1f} us")
ratio = stamp['rtt_p50_us'] / lping['rtt_p50_us']
print(f"ratio stamp p50 / loopscope ping udp p50 = {ratio:.2f} (goal <= 1.1: {'met' if ratio <= 1.1 else 'MISSED'})")
PY
for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=()

echo "== 2. reflector rate on one core (${seconds} s of examples/stamp_load, window 1024; load $(load))"
# sockperf offers some 300,000 datagrams a second from one thread, below the goal: the Rust
# generator keeps a window of requests outstanding with sendmmsg/recvmmsg (as bench/bfd.sh's
# sbfd_load) and counts the replies of its own session; the reflector's CPU time from /proc
# gives the answers per CPU-second whatever else runs.
gen=${STAMP_LOAD_BIN:-$PWD/target/release/examples/stamp_load}
[ -x "$gen" ] || cargo build --release -q -p loopscope-measure --example stamp_load
taskset -c 0 "$bin" --json reflect --stamp udp://127.0.0.1:18621 --rate-limit 0 > "$work/rate.log" 2>&1 & rpid=$!; pids+=($rpid)
wait_listening "$work/rate.log"
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
before=$(cpu "$rpid")
taskset -c 1 "$gen" 127.0.0.1:18621 "$seconds" 1 1024 > "$work/load.json"
after=$(cpu "$rpid")
finish "$rpid"; pids=(); summary=$(tail -1 "$work/rate.log")
python3 - "$summary" "$(cat "$work/load.json")" "$before" "$after" "$ticks" <<'PY'
import json, sys
s, load = json.loads(sys.argv[1]), json.loads(sys.argv[2])
cpu_s = (float(sys.argv[4]) - float(sys.argv[3])) / float(sys.argv[5])
pps = load['answered_per_s']
print(f"stamp_load sent {load['sent']}, got {load['answered']} replies in {load['seconds']:.1f} s; reflector received {s['received']}, answered {s['reflected']}: {pps:,.0f} per second on one core (goal >= 500,000: {'met' if pps >= 500000 else 'MISSED'}); it used {cpu_s:.2f} s of CPU, {load['answered'] / max(cpu_s, 1e-9):,.0f} answers per CPU-second")
PY

rate_count=$((seconds * 100000))
echo "== 3. 100,000 packets/s for ${seconds} s, sender on CPU 1, reflector on CPU 0 (load $(load))"
taskset -c 0 "$bin" --json reflect --stamp udp://127.0.0.1:18622 --rate-limit 0 > "$work/res.log" 2>&1 & rpid=$!; pids+=($rpid)
wait_listening "$work/res.log"
sender=$(taskset -c 1 "$bin" --json stamp udp://127.0.0.1:18622 -c "$rate_count" -i 10us -q | tail -1 || true)
finish "$rpid"; pids=(); summary=$(tail -1 "$work/res.log")
python3 - "$sender" "$summary" "$rate_count" <<'PY'
import json, sys
s, r, wanted = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
print(f"sender: {s['transmitted']}/{wanted} sent, {s['send_errors']} send errors, {s['received']} answered; achieved interval {s['achieved_interval_us']} us; send lateness p50 {s['send_lag_p50_us']} p99 {s['send_lag_p99_us']} max {s['send_lag_max_us']} us (goal p99 <= 5: {'met' if s['send_lag_p99_us'] <= 5 else 'MISSED'}; no skip: {'met' if s['transmitted'] == wanted and s['send_errors'] == 0 else 'MISSED'})")
print(f"reflector residence (T3 - T2) p50 {s['residence_p50_us']} p99 {s['residence_p99_us']} max {s['residence_max_us']} us (goal p99 <= 20: {'met' if s['residence_p99_us'] is not None and s['residence_p99_us'] <= 20 else 'MISSED'}); reflector answered {r['reflected']} of {r['received']}")
PY
echo "load at the end: $(load)"
