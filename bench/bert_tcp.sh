#!/usr/bin/env bash
# BERT over TCP through `loopscope reflect` (every byte crosses loopback twice, and every bit is
# generated and checked) beside iperf3 on the same loopback, back to back, three rounds, median
# ratio. Peers: `iperf3 --bidir` (one stream each way), `iperf3 -P 2 --bidir` (two each way),
# one-way single stream. Debian's iperf3 3.12 is single-threaded: its --bidir and -P streams
# share one core, while our generator and checker run on a thread each.
# Prints per-direction throughputs (pattern bits per second for the BERT) and the ratios.
# Usage: bench/bert_tcp.sh [SECONDS] [ROUNDS]   (default 5 s, 3 rounds)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
seconds=${1:-5}
rounds=${2:-3}
build_loopscope
require iperf3 iperf3

out=$(mktemp)
$bin --json reflect tcp://127.0.0.1:0 --quiet >"$out" &
track $!
endpoint=$(reflector_endpoint "$out")

port=$(free_port)
iperf3 -s -B 127.0.0.1 -p "$port" >/dev/null 2>&1 &
track $!
for _ in $(seq 100); do ss -ltn | grep -q ":$port " && break; sleep 0.05; done

iperf_bidir() { # per-direction mean of an iperf3 --bidir run; args: extra flags
  iperf3 -c 127.0.0.1 -p "$port" --bidir -t "$seconds" -J "$@" |
    python3 -c 'import json,sys; e=json.load(sys.stdin)["end"]; print((e["sum_received"]["bits_per_second"]+e["sum_received_bidir_reverse"]["bits_per_second"])/2)'
}

results=$(mktemp)
for round in $(seq "$rounds"); do
  ours=$($bin --json bert "$endpoint" --duration "${seconds}s" |
    python3 -c 'import json,sys; s=[json.loads(l) for l in sys.stdin][-1]; assert s["bit_errors"]==0, s; print(s["throughput_bps"])')
  bidir=$(iperf_bidir)
  bidir_p2=$(iperf_bidir -P 2)
  oneway=$(iperf3 -c 127.0.0.1 -p "$port" -t "$seconds" -J |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])')
  echo "$ours $bidir $bidir_p2 $oneway" >>"$results"
done

python3 - "$results" <<'PY'
import statistics, sys
rows = [list(map(float, line.split())) for line in open(sys.argv[1])]
g = lambda v: f"{v/1e9:6.2f}"
print("round  bert/dir  iperf3 --bidir/dir  -P2 --bidir/dir  one-way   (Gbit/s)  ratios: bidir  -P2  one-way")
ratios = []
for i, (ours, bidir, p2, oneway) in enumerate(rows, 1):
    r = (ours / bidir, ours / p2, ours / oneway)
    ratios.append(r)
    print(f"{i:5}  {g(ours)}    {g(bidir)}              {g(p2)}           {g(oneway)}              {r[0]:.2f}  {r[1]:.2f}  {r[2]:.2f}")
med = [statistics.median(col) for col in zip(*ratios)]
print(f"median ratio bert / iperf3 --bidir per direction: {med[0]:.2f}  (goal >= 1.0; iperf3 3.12 is single-threaded)")
print(f"median ratio bert / iperf3 -P 2 --bidir per dir:  {med[1]:.2f}")
print(f"median ratio bert / iperf3 one-way single stream: {med[2]:.2f}")
PY
