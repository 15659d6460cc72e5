#!/usr/bin/env bash
# BERT over TCP through `loopscope reflect` (every byte crosses loopback twice) beside
# `iperf3 --bidir` (two streams, one each way) and a single one-way iperf3 stream, same run.
# Prints loopscope's throughput (pattern bits per second, i.e. per direction), iperf3's mean
# per-direction throughput ((forward + reverse) / 2), and the ratios.
# Usage: bench/bert_tcp.sh [SECONDS]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
cargo build --release -q -p loopscope
bin=target/release/loopscope
command -v iperf3 >/dev/null || { echo "iperf3 is not installed (apt-get install iperf3)"; exit 2; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

out=$(mktemp)
$bin --json reflect tcp://127.0.0.1:0 --quiet >"$out" &
pids+=($!)
for _ in $(seq 50); do grep -q listening "$out" && break; sleep 0.1; done
endpoint=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["endpoint"])' "$out")

ours=$($bin --json bert "$endpoint" --duration "${seconds}s" |
  python3 -c 'import json,sys; s=[json.loads(l) for l in sys.stdin][-1]; assert s["bit_errors"]==0, s; print(s["throughput_bps"])')

# Context: the same BERT over the in-memory loop (no kernel at all) is the ceiling the pattern
# engine sets in this run.
ceiling=$($bin --json bert loop: --duration "${seconds}s" |
  python3 -c 'import json,sys; s=[json.loads(l) for l in sys.stdin][-1]; print(s["throughput_bps"])')

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
iperf3 -s -B 127.0.0.1 -p "$port" >/dev/null 2>&1 &
pids+=($!)
sleep 0.5
bidir=$(iperf3 -c 127.0.0.1 -p "$port" --bidir -t "$seconds" -J |
  python3 -c 'import json,sys; e=json.load(sys.stdin)["end"]; print((e["sum_received"]["bits_per_second"]+e["sum_received_bidir_reverse"]["bits_per_second"])/2)')
sleep 0.5
oneway=$(iperf3 -c 127.0.0.1 -p "$port" -t "$seconds" -J |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])')

python3 - "$ours" "$bidir" "$oneway" "$ceiling" <<'PY'
import sys
ours, bidir, oneway, ceiling = map(float, sys.argv[1:])
g = lambda v: f"{v/1e9:.2f} Gbit/s"
print(f"loopscope bert tcp: via reflect   {g(ours)} per direction (0 bit errors)")
print(f"iperf3 --bidir mean per direction {g(bidir)}")
print(f"iperf3 one-way single stream      {g(oneway)}")
print(f"ratio bert / iperf3 --bidir:      {ours/bidir:.2f}  (goal >= 1.0)")
print(f"ratio bert / iperf3 one-way:      {ours/oneway:.2f}")
print(f"context: bert loop: (no kernel)   {g(ceiling)}; tcp via reflect reaches {ours/ceiling:.2f} of it")
PY
