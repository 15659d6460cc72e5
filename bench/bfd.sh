#!/usr/bin/env bash
# BFD figures, on demand (not in CI; needs root, FRR and tshark). Release builds:
#
#   cargo build --release -p loopscope --bin loopscope
#   cargo build --release -p loopscope-measure --example sbfd_load
#   bench/bfd.sh [--bin target/release/loopscope] [--seconds 20] [--window 1024] [--realtime]
#
# 1. S-BFD reflector: answers per second. `examples/sbfd_load` (Rust, sendmmsg/recvmmsg)
#    keeps --window S-BFD Control packets (RFC 7880) outstanding toward `reflect --sbfd` on
#    127.0.0.1:7784 and counts the matching answers; the reflector's CPU time comes from
#    /proc, so the answers per CPU-second say what the reflector costs whatever the load.
#    FRR 8.4 has no S-BFD reflector to compare with. `--rate-limit 0`: the reflector keeps the
#    per-source limit of every datagram service, and the generator is one source.
# 2. Transmit timing at 50 ms x 3 against FRR's bfdd, ours and bfdd's in the same capture:
#    two namespaces joined by a veth, bfdd (with zebra) on one side, `loopscope bfd` on the
#    other, tshark capturing on the veth. RFC 5880 §6.8.7 reduces each interval by a random
#    0-25 %, so a gap between two packets is rightly anywhere in 37.5..50 ms: the jitter a
#    sender adds is how far its gaps fall outside that window (past 50 ms: late; under
#    37.5 ms: early), computed the same way for both speakers. Ours also reports how late
#    each periodic packet left against its own deadline (tx_late_*_us in its summary).
#    --realtime runs our speaker under SCHED_FIFO (bfdd runs as it is).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/loopscope
load=target/release/examples/sbfd_load
seconds=20
window=1024
realtime=()
while (($#)); do
  case $1 in
    --bin) bin=$2; shift 2 ;;
    --load) load=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --window) window=$2; shift 2 ;;
    --realtime) realtime=(--realtime); shift ;;
    *) echo "usage: $0 [--bin PATH] [--load PATH] [--seconds N] [--window N] [--realtime]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bench/bfd.sh: needs root (namespaces, FRR)" >&2; exit 2; }
[ -x "$load" ] || { echo "bench/bfd.sh: build the generator first: cargo build --release -p loopscope-measure --example sbfd_load" >&2; exit 2; }
for tool in tshark python3 vtysh; do
  command -v $tool >/dev/null || { echo "bench/bfd.sh: $tool is not installed" >&2; exit 2; }
done
bin=$(realpath "$bin")
load=$(realpath "$load")
work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del bfdbenchA 2>/dev/null || true
  ip netns del bfdbenchB 2>/dev/null || true
  rm -rf "$work" "${capture:-}"
}
trap cleanup EXIT

echo "load before: $(uptime)"
echo "== S-BFD reflector, $seconds s of load (Rust generator: sendmmsg/recvmmsg, 1 thread, window $window) =="
ip netns add bfdbenchA
ip -n bfdbenchA link set lo up
ip netns exec bfdbenchA "$bin" --json reflect --sbfd 42 udp://127.0.0.1 --rate-limit 0 > "$work/reflector.json" &
pids+=($!)
until grep -q listening "$work/reflector.json" 2>/dev/null; do sleep 0.05; done
# `ip netns exec` execs the program: the background pid is the reflector's.
reflector=${pids[0]}
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
before=$(cpu "$reflector")
ip netns exec bfdbenchA "$load" 127.0.0.1:7784 42 "$seconds" 1 "$window" | tee "$work/load.json"
after=$(cpu "$reflector")
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
pids=()
tail -n 1 "$work/reflector.json"
python3 - "$work/load.json" "$before" "$after" "$ticks" <<'PY'
import json, sys
load = json.load(open(sys.argv[1]))
cpu_s = (float(sys.argv[3]) - float(sys.argv[2])) / float(sys.argv[4])
print(f"reflector answered {load['answered_per_s']:,.0f}/s on loopback; it used {cpu_s:.2f} s of CPU "
      f"in {load['seconds']:.1f} s, so {load['answered'] / max(cpu_s, 1e-9):,.0f} answers per CPU-second")
PY
ip netns del bfdbenchA

echo "load: $(uptime)"
echo "== transmit timing at 50 ms x 3, loopscope and FRR bfdd in one capture, $seconds s =="
ip netns add bfdbenchA
ip netns add bfdbenchB
ip link add vA netns bfdbenchA type veth peer name vB netns bfdbenchB
ip -n bfdbenchA link set lo up; ip -n bfdbenchB link set lo up
ip -n bfdbenchA addr add 10.78.0.1/24 dev vA; ip -n bfdbenchB addr add 10.78.0.2/24 dev vB
ip -n bfdbenchA link set vA up; ip -n bfdbenchB link set vB up
cat > "$work/bfdd.conf" <<'CONF'
bfd
 peer 10.78.0.2 local-address 10.78.0.1 interface vA
  receive-interval 50
  transmit-interval 50
  detect-multiplier 3
 !
!
CONF
: > "$work/zebra.conf"
chown -R frr:frr "$work"
for daemon in zebra bfdd; do
  extra=()
  [ $daemon = bfdd ] && extra=(--bfdctl "$work/bfdd.sock")
  ip netns exec bfdbenchA /usr/lib/frr/$daemon -f "$work/$daemon.conf" -i "$work/$daemon.pid" \
    -z "$work/zserv.api" --vty_socket "$work" -u frr -g frr -P 0 \
    --log "file:$work/$daemon.log" "${extra[@]}" &
  pids+=($!)
done
# bfdd enables the session once zebra has told it about vA.
until ip netns exec bfdbenchA vtysh --vty_socket "$work" -c 'show bfd peers json' 2>/dev/null |
  grep -q '"interface":"vA"'; do
  sleep 0.1
done
capture=$(mktemp -d)
ip netns exec bfdbenchB tshark -i vB -f "udp port 3784" -w "$capture/bfd.pcap" 2> "$capture/tshark.log" &
pids+=($!)
until grep -q 'Capturing on' "$capture/tshark.log"; do sleep 0.05; done
ip netns exec bfdbenchB "$bin" --json bfd udp://10.78.0.1 --local 10.78.0.2 --min-tx 50ms \
  --min-rx 50ms --multiplier 3 --duration "$((seconds + 5))s" --quiet "${realtime[@]}" \
  > "$work/speaker.json" || true
python3 - "$work/speaker.json" <<'PY'
import json, sys
s = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]
print(f"loopscope's own account: {s['tx_late_count']} periodic sends, past their deadline "
      f"p50 {s['tx_late_p50_us']} us, p99 {s['tx_late_p99_us']} us, max {s['tx_late_max_us']} us"
      f"{' (SCHED_FIFO)' if s['realtime'] else ''}; flaps {s['flaps']}")
PY
kill -INT "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
cat "$capture/tshark.log" >&2
cp "$capture/bfd.pcap" "${BFD_BENCH_PCAP:-/dev/null}" 2>/dev/null || true
tshark -r "$capture/bfd.pcap" -T fields -e frame.time_epoch -e ip.src -e bfd.sta -e bfd.flags.p \
  -e bfd.flags.f -e bfd.desired_min_tx_interval 2>/dev/null | python3 -c '
import sys
rows = [l.split("\t") for l in sys.stdin.read().splitlines()]
def up_periodic(src):
    times = []
    for t, ip, sta, p, f, tx in rows:
        # Periodic packets in Up at 50 ms (no Final: those answer Polls out of schedule).
        if ip == src and sta in ("3", "0x03") and f not in ("1", "True") and tx in ("50000", "50"):
            times.append(float(t))
    return times
def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(round(q * len(values) + 0.5)) - 1))]
for name, src in (("loopscope", "10.78.0.2"), ("bfdd 8.4", "10.78.0.1")):
    times = up_periodic(src)
    gaps = [(b - a) * 1e3 for a, b in zip(times, times[1:])]
    if len(gaps) < 10:
        print(f"{name}: only {len(gaps)} gaps captured"); continue
    # Outside the window RFC 5880 section 6.8.7 allows (37.5..50 ms): the jitter the sender added.
    outside = [max(0.0, g - 50.0, 37.5 - g) for g in gaps]
    early = sum(1 for g in gaps if g < 37.5)
    late = sum(1 for g in gaps if g > 50.0)
    print(f"{name:10s} {len(gaps)} gaps: min {min(gaps):.3f} p50 {pct(gaps,.5):.3f} "
          f"p99 {pct(gaps,.99):.3f} max {max(gaps):.3f} ms; outside 37.5..50 ms: p99 "
          f"{pct(outside,.99):.3f} max {max(outside):.3f} ms ({late} late, {early} early)")
'
echo "load after: $(uptime)"
