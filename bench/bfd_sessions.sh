#!/usr/bin/env bash
# One responder, many sessions, on demand (not in CI; needs root). Release builds:
#
#   cargo build --release -p loopscope --bin loopscope
#   cargo build --release -p loopscope-measure --example bfd_sessions
#   nice -n 19 bench/bfd_sessions.sh [--sessions 1000] [--interval-ms 100] [--seconds 600]
#
# Two namespaces joined by a veth. `loopscope reflect --bfd` runs in one, pinned to one CPU
# (taskset -c 0); `examples/bfd_sessions` opens SESSIONS sessions to it from the other (one
# address, one discriminator each; RFC 5880 state machine, 100 ms x 3 by default). The
# responder runs under SCHED_FIFO with --realtime (the generator does not). The
# responder has no false Down when none of its sessions left Up while the generator ran
# (counted from its NDJSON state events), and the generator saw none fall either.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/loopscope
generator=target/release/examples/bfd_sessions
sessions=1000
interval=100
seconds=600
realtime=()
while (($#)); do
  case $1 in
    --bin) bin=$2; shift 2 ;;
    --generator) generator=$2; shift 2 ;;
    --sessions) sessions=$2; shift 2 ;;
    --interval-ms) interval=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --realtime) realtime=(--bfd-realtime); shift ;;
    *) echo "usage: $0 [--sessions N] [--interval-ms MS] [--seconds S] [--realtime]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bench/bfd_sessions.sh: needs root (namespaces)" >&2; exit 2; }
[ -x "$generator" ] || { echo "bench/bfd_sessions.sh: build it first: cargo build --release -p loopscope-measure --example bfd_sessions" >&2; exit 2; }
bin=$(realpath "$bin"); generator=$(realpath "$generator")
work=$(mktemp -d)
responder=
cleanup() {
  [ -n "$responder" ] && kill "$responder" 2>/dev/null || true
  wait 2>/dev/null || true
  ip netns del bfdmanyA 2>/dev/null || true
  ip netns del bfdmanyB 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add bfdmanyA; ip netns add bfdmanyB
ip link add mA netns bfdmanyA type veth peer name mB netns bfdmanyB
ip -n bfdmanyA link set lo up; ip -n bfdmanyB link set lo up
ip -n bfdmanyA addr add 10.81.0.1/24 dev mA; ip -n bfdmanyB addr add 10.81.0.2/24 dev mB
ip -n bfdmanyA link set mA up; ip -n bfdmanyB link set mB up
echo "load before: $(uptime)"
ip netns exec bfdmanyA taskset -c 0 "$bin" --json reflect --bfd udp://10.81.0.1 "${realtime[@]}" \
  --bfd-min-tx "${interval}ms" --bfd-min-rx "${interval}ms" > "$work/responder.json" &
responder=$!
until grep -q listening "$work/responder.json" 2>/dev/null; do sleep 0.05; done
ticks=$(getconf CLK_TCK)
cpu_before=$(awk '{print $14 + $15}' "/proc/$responder/stat")
ip netns exec bfdmanyB "$generator" 10.81.0.1 10.81.0.2 "$sessions" "$interval" "$seconds" \
  > "$work/generator.json"
ended_ms=$(date +%s%3N)
cpu_after=$(awk '{print $14 + $15}' "/proc/$responder/stat")
echo "load at the end: $(uptime)"
kill -INT "$responder"; wait "$responder" 2>/dev/null || true
responder=
python3 - "$work/generator.json" "$work/responder.json" "$ended_ms" "$cpu_before" "$cpu_after" "$ticks" <<'PY'
import json, sys
gen = json.load(open(sys.argv[1]))
events = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
ended = int(sys.argv[3])
cpu = (float(sys.argv[5]) - float(sys.argv[4])) / float(sys.argv[6])
states = [e for e in events if e.get("type") == "state"]
ups = sum(1 for e in states if e["to"] == "Up" and e["unix_ms"] <= ended)
false_downs = [e for e in states if e["from"] == "Up" and e["unix_ms"] <= ended]
print(f"generator: {gen['sessions']} sessions, {gen['came_up']} came Up, {gen['up_at_end']} Up at the end, "
      f"{gen['falls_from_up']} fell from Up, {gen['sent']} sent, {gen['received']} received in {gen['seconds']} s")
if gen["first_falls"]:
    print("  first falls:", "; ".join(gen["first_falls"]))
print(f"responder: {ups} sessions Up, {len(false_downs)} left Up while the generator ran; "
      f"{cpu:.1f} s of CPU in {gen['seconds']} s ({100 * cpu / gen['seconds']:.1f} % of one core)")
for e in false_downs[:10]:
    print("  ", e["t_s"], e["peer"], e["from"], "->", e["to"], e["diagnostic"], e.get("detection_ms"))
verdict = gen["came_up"] == gen["sessions"] and gen["falls_from_up"] == 0 and not false_downs
print("PASS: no false Down" if verdict else "FAIL: sessions fell or never came up")
PY
