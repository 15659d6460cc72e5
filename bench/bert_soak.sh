#!/usr/bin/env bash
# A long BERT over TCP through `loopscope reflect` (one hour by default), on demand.
# Every minute prints the reflector's and the tester's RSS and the tester's throughput over
# that minute, so a leak or a slowdown shows as a trend from the first minute to the last.
# Usage: bench/bert_soak.sh [MINUTES]   (LOOPSCOPE_BIN=path uses that binary, unbuilt)
# SOAK_RATE=200M caps the tester's line rate (`--impair rate=`), so that on a shared machine
# the soak does not take a whole core; without it the run goes as fast as TCP on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-60}
if [[ -n ${LOOPSCOPE_BIN:-} ]]; then
  bin=$LOOPSCOPE_BIN
else
  cargo build --release -q -p loopscope
  bin=target/release/loopscope
fi
out=$(mktemp); events=$(mktemp)
$bin --json reflect tcp://127.0.0.1:0 --quiet >"$out" &
reflector=$!
trap 'kill $reflector $tester 2>/dev/null || true; rm -f "$out" "$events"' EXIT
until grep -q endpoint "$out"; do sleep 0.1; done
endpoint=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["endpoint"])' "$out")
rate_cap=()
if [[ -n ${SOAK_RATE:-} ]]; then rate_cap=(--impair "rate=$SOAK_RATE"); fi
$bin --json bert "$endpoint" --duration "${minutes}m" "${rate_cap[@]}" >"$events" &
tester=$!
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo -; }
# Throughput of one minute: the bits of that minute's per-second events.
minute_gbps() {
  python3 - "$events" "$1" <<'PY'
import json, sys
minute = int(sys.argv[2])
bits = 0
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("event") == "second" and (minute - 1) * 60 < e.get("second", -1) <= minute * 60:
        bits += e["bits"]
print(f"{bits / 60 / 1e9:.3f}")
PY
}
load() { cut -d' ' -f1 /proc/loadavg; }
printf '%6s %14s %14s %12s %6s\n' minute reflector_kib tester_kib gbit_per_s load
started=$SECONDS
for minute in $(seq 1 "$minutes"); do
  # To the minute's end from the start, not 60 s after the last line (which drifted by the
  # time each line took, and lost the last minutes of a loaded hour).
  left=$((started + minute * 60 - SECONDS))
  if ((left > 0)); then sleep "$left"; fi
  kill -0 "$tester" 2>/dev/null || break
  printf '%6s %14s %14s %12s %6s\n' "$minute" "$(rss $reflector)" "$(rss $tester)" "$(minute_gbps "$minute")" "$(load)"
done
wait "$tester" || true
tail -1 "$events"
