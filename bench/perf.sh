#!/usr/bin/env bash
# Throughput on loopback: `loopscope perf` (our client and server) beside iperf3 3.12 (its own
# client and server), back to back, three times each, median ratio. Cases: one TCP stream,
# -P 2 (sum), --bidir (per direction). Then request-response latency: `perf --rr` over TCP
# and UDP beside sockperf's ping-pong over the same protocol (same message size).
# Both tools are compared on what the *receiver* counted, over the same test length.
# Debian's iperf3 3.12 is single-threaded: its -P and --bidir streams share one core, ours
# run a thread per stream.
# Usage: bench/perf.sh [SECONDS]   (default 5 per run)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
seconds=${1:-5}
build_loopscope
require iperf3 iperf3

stock_port=$(free_port)
iperf3 -s -B 127.0.0.1 -p "$stock_port" >/dev/null 2>&1 &
track $!
our_port=$(free_port)
$bin perf --server "tcp://127.0.0.1:$our_port" --max-duration 1h >/dev/null 2>&1 &
track $!
# A second server that receives with MSG_TRUNC (--skip-rx-copy): it never copies what it
# sinks. Reported as its own line, not as the default.
trunc_port=$(free_port)
$bin perf --server "tcp://127.0.0.1:$trunc_port" --max-duration 1h --skip-rx-copy >/dev/null 2>&1 &
track $!
wait_listen "$stock_port"
wait_listen "$our_port"
wait_listen "$trunc_port"

results=$(mktemp)
for round in 1 2 3; do
  for case in single p2 bidir trunc; do
    port=$our_port
    case $case in
      single) flags=() ;;
      p2) flags=(-P 2) ;;
      bidir) flags=(--bidir) ;;
      trunc) flags=(); port=$trunc_port ;;
    esac
    echo "ours $case $($bin --json perf "tcp://127.0.0.1:$port" -t "$seconds" -i 0 "${flags[@]}" | tail -1)" >>"$results"
    echo "iperf3 $case $(iperf3 -c 127.0.0.1 -p "$stock_port" -t "$seconds" -J "${flags[@]}" | tr -d '\n\t')" >>"$results"
  done
done

rr=""
if command -v sockperf >/dev/null; then
  sp_port=$(free_port)
  sockperf sr --tcp -i 127.0.0.1 -p "$sp_port" >/dev/null 2>&1 &
  track $!
  wait_listen "$sp_port"
  sp_udp_port=$(free_port)
  sockperf sr -i 127.0.0.1 -p "$sp_udp_port" >/dev/null 2>&1 &
  track $!
  sleep 0.5 # sockperf's UDP server has no listening state to wait for
  for round in 1 2 3; do
    echo "ours rr $($bin --json perf "tcp://127.0.0.1:$our_port" --rr -l 64 -t "$seconds" -i 0 | tail -1)" >>"$results"
    echo "sockperf rr $(sockperf pp --tcp -i 127.0.0.1 -p "$sp_port" -m 64 -t "$seconds" 2>&1 | tr '\n' ' ')" >>"$results"
    echo "ours udprr $($bin --json perf "udp://127.0.0.1:$our_port" --rr -l 64 -t "$seconds" -i 0 | tail -1)" >>"$results"
    echo "sockperf udprr $(sockperf pp -i 127.0.0.1 -p "$sp_udp_port" -m 64 -t "$seconds" 2>&1 | tr '\n' ' ')" >>"$results"
  done
  rr=yes
fi

python3 - "$results" "$seconds" <<'PY'
import json, re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    tool, case, text = line.split(" ", 2)
    rows.setdefault((tool, case), []).append(text)

def ours_rates(text):
    s = json.loads(text)
    # what the receiver counted: the far end's count on what we sent, ours on what came in
    sent = sum(st["peer_bytes"] or 0 for st in s["streams"] if st["direction"] == "send")
    got = sum(st["bytes"] for st in s["streams"] if st["direction"] == "receive")
    return sent * 8 / s["seconds"], got * 8 / s["seconds"]

def stock_rates(text):
    e = json.loads(text)["end"]
    fwd = e["sum_received"]["bits_per_second"]
    rev = e.get("sum_received_bidir_reverse", {}).get("bits_per_second", 0.0)
    return fwd, rev

def median(xs):
    return statistics.median(xs)

print(f"perf vs iperf3 3.12 on loopback, {sys.argv[2]} s per run, 3 runs back to back, medians")
print("(iperf3 3.12 is single-threaded: its streams share one core; ours run a thread each)")
for case, label in [("single", "1 stream"), ("p2", "-P 2 sum"), ("bidir", "--bidir per direction"),
                    ("trunc", "1 stream, server MSG_TRUNC")]:
    ours = [ours_rates(t) for t in rows[("ours", case)]]
    peer = [stock_rates(t) for t in rows[("iperf3", case)]]
    if case == "bidir":
        o = [min(a, b) for a, b in ours]; p = [min(a, b) for a, b in peer]
        detail = (f"ours {median([a for a,_ in ours])/1e9:.2f}/{median([b for _,b in ours])/1e9:.2f}, "
                  f"iperf3 {median([a for a,_ in peer])/1e9:.2f}/{median([b for _,b in peer])/1e9:.2f} Gbit/s (each way)")
    else:
        o = [a for a, _ in ours]; p = [a for a, _ in peer]
        detail = f"ours {median(o)/1e9:.2f} Gbit/s, iperf3 {median(p)/1e9:.2f} Gbit/s"
    ratios = [a / b for a, b in zip(o, p)]
    print(f"{label:24s} {detail}; ratio per run {', '.join(f'{r:.2f}' for r in ratios)}; median {median(ratios):.2f}")
for case, label in [("rr", "--rr TCP 64 B p50 RTT"), ("udprr", "--rr UDP 64 B p50 RTT")]:
    if ("ours", case) not in rows:
        continue
    ours = [json.loads(t) for t in rows[("ours", case)]]
    peer = []
    for t in rows[("sockperf", case)]:
        p50 = float(re.search(r"percentile 50\.000 =\s*([0-9.]+)", t).group(1))
        peer.append(2 * p50)
    o50 = [s["rtt_p50_us"] for s in ours]
    tps = [s["transactions_per_second"] for s in ours]
    ratios = [a / b for a, b in zip(o50, peer)]
    print(f"{label:24s} ours {median(o50):.1f} us ({median(tps):.0f} transactions/s), "
          f"sockperf ping-pong x2 {median(peer):.1f} us; ratio per run {', '.join(f'{r:.2f}' for r in ratios)}; median {median(ratios):.2f} (goal <= 1.05)")
PY
