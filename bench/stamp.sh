#!/usr/bin/env bash
# STAMP round trip on loopback beside iputils ping and `loopscope ping udp://` in the same run:
# N probes each at the same interval, one after the other, p50 of each (iputils prints no p50:
# its avg is shown instead, with min). Debug or release binary as given.
# Usage: bench/stamp.sh [COUNT] [INTERVAL_S]   (default 2000 0.001)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-2000}
interval=${2:-0.001}
bin=${LOOPSCOPE_BIN:-$PWD/target/release/loopscope}
[ -x "$bin" ] || cargo build --release -q -p loopscope
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
"$bin" stamp --reflect udp://127.0.0.1:18620 > "$work/stamp.log" 2>&1 & pids+=($!)
"$bin" reflect udp://127.0.0.1:18007 --rate-limit 0 > "$work/reflect.log" 2>&1 & pids+=($!)
until grep -q "listening on" "$work/stamp.log" && grep -qE "reflecting on|listening on" "$work/reflect.log"; do sleep 0.05; done
stamp=$("$bin" --json stamp udp://127.0.0.1:18620 -c "$count" -i "${interval}s" -q | tail -1)
lping=$("$bin" --json ping udp://127.0.0.1:18007 -c "$count" -i "$interval" -q | tail -1)
iping=$(ping -c "$count" -i "$interval" -q 127.0.0.1 | tail -1)
python3 - "$stamp" "$lping" "$iping" <<'PY'
import json, sys
stamp, lping, iping = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
mn, avg, mx, mdev = [float(x) for x in iping.split('=')[1].split()[0].split('/')]
print(f"stamp (kernel T1/T4: {stamp['timestamp_source']}): rtt p50 {stamp['rtt_p50_us']:.1f} us, min {stamp['rtt_min_us']:.1f}, p99 {stamp['rtt_p99_us']:.1f}; rtt_net p50 {stamp['rtt_net_p50_us']:.1f}; {stamp['received']}/{stamp['transmitted']}")
print(f"loopscope ping udp://: rtt p50 {lping['rtt_p50_us']:.1f} us, min {lping['rtt_min_us']:.1f}, p99 {lping['rtt_p99_us']:.1f}")
print(f"iputils ping 127.0.0.1: min {mn*1000:.1f} us, avg {avg*1000:.1f} us, max {mx*1000:.1f} us")
print(f"ratio stamp p50 / loopscope ping udp p50 = {stamp['rtt_p50_us']/lping['rtt_p50_us']:.2f}")
PY
