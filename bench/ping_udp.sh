#!/usr/bin/env bash
# Round trip over UDP on loopback: `loopscope ping udp://` through `loopscope reflect` beside
# sockperf ping-pong against its own server, same run, same UDP payload size. sockperf reports
# one-way latency (RTT/2); it is doubled here to compare round trips.
# Usage: bench/ping_udp.sh [SECONDS]   (default 5; loopscope sends as many requests as
# sockperf managed in the same time, one outstanding at a time like sockperf)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
seconds=${1:-5}
build_loopscope
require sockperf sockperf

out=$(mktemp)
$bin --json reflect udp://127.0.0.1:0 --quiet --rate-limit 0 >"$out" &
track $!
endpoint=$(reflector_endpoint "$out")

port=$(free_port udp)
sockperf sr -i 127.0.0.1 -p "$port" >/dev/null 2>&1 &
track $!
sleep 0.5
peer=$(sockperf pp -i 127.0.0.1 -p "$port" -m 94 -t "$seconds" 2>&1 |
  python3 -c '
import re,sys
text=sys.stdin.read()
p50=re.search(r"percentile 50\.000 =\s*([0-9.]+)", text).group(1)
p99=re.search(r"percentile 99\.000 =\s*([0-9.]+)", text).group(1)
n=re.search(r"Total ([0-9]+) observations", text).group(1)
print(p50, p99, n)')

count=$(echo "$peer" | cut -d" " -f3)
peer=$(echo "$peer" | cut -d" " -f1,2)
# 56 payload bytes + 26 frame + 12 datagram header = 94 bytes of UDP payload.
ours=$($bin --json ping -q -c "$count" -W 1s -i 0 -s 56 "$endpoint" |
  python3 -c 'import json,sys; s=[json.loads(l) for l in sys.stdin][-1]; print(s["rtt_p50_us"], s["rtt_p99_us"], s["received"], s["transmitted"])')

python3 - $ours $peer <<'PY'
import sys
o50, o99, rx, tx, s50, s99 = map(float, sys.argv[1:])
print(f"loopscope ping udp:  p50 {o50:.2f} us  p99 {o99:.2f} us  ({rx:.0f}/{tx:.0f} replies)")
print(f"sockperf ping-pong:  p50 {2*s50:.2f} us  p99 {2*s99:.2f} us  (round trip = 2 x its RTT/2)")
print(f"ratio p50 loopscope / sockperf: {o50/(2*s50):.2f}  (goal <= 1.2)")
PY
