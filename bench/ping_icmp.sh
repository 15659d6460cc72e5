#!/usr/bin/env bash
# ICMP round trip against iputils `ping` on the same host (issue 11 item 1): runs the ignored
# test `icmp_round_trips_agree_with_iputils_ping` (a network namespace of its own, alternating
# rounds of 20 requests 10 ms apart from each tool, medians over all replies) RUNS times and
# prints each run's ratios. The goal is every ratio within 0.85..1.15. Needs root and iputils.
# Usage: bench/ping_icmp.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
command -v ping >/dev/null || { echo "iputils ping is not installed (apt-get install iputils-ping)"; exit 2; }
cargo test -q -p loopscope --test ping_icmp --no-run
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
passed=0
for run in $(seq "$runs"); do
  if out=$(cargo test -q -p loopscope --test ping_icmp -- --ignored --nocapture \
        icmp_round_trips_agree_with_iputils_ping 2>&1); then
    passed=$((passed + 1))
  fi
  echo "run $run: $(grep -o '^[0-9a-f:.]*: median round trip.*' <<<"$out" | tr '\n' ' ')"
done
echo "$passed of $runs runs within 15% for both families"
