#!/usr/bin/env bash
# BFD figures, on demand (not in CI; needs root, FRR and tshark):
#
#   bench/bfd.sh [--bin target/release/loopscope] [--seconds 20]
#
# 1. S-BFD reflector: answers per second. A Python load generator (several processes, each
#    with its own socket and discriminator) sends S-BFD Control packets (RFC 7880) to
#    `reflect --sbfd` on 127.0.0.1:7784 as fast as it can and counts the answers; FRR 8.4 has
#    no S-BFD reflector to compare with.
# 2. Transmit timing at 50 ms x 3 against FRR's bfdd, ours and bfdd's in the same capture:
#    two namespaces joined by a veth, bfdd (with zebra) on one side, `loopscope bfd` on the
#    other, tshark capturing on the veth. For each speaker: the gaps between its periodic
#    packets (RFC 5880 section 6.8.7 asks for 75..100 % of the interval, so 37.5..50 ms) and how
#    far past 50 ms the late ones were (the scheduler's lateness, which is the jitter we add).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/loopscope
seconds=20
while (($#)); do
  case $1 in
    --bin) bin=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    *) echo "usage: $0 [--bin PATH] [--seconds N]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bench/bfd.sh: needs root (namespaces, FRR)" >&2; exit 2; }
for tool in tshark python3 vtysh; do
  command -v $tool >/dev/null || { echo "bench/bfd.sh: $tool is not installed" >&2; exit 2; }
done
bin=$(realpath "$bin")
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

echo "== S-BFD reflector, $seconds s of load =="
ip netns add bfdbenchA
ip -n bfdbenchA link set lo up
ip netns exec bfdbenchA "$bin" --json reflect --sbfd 42 udp://127.0.0.1 > "$work/reflector.json" &
pids+=($!)
until grep -q listening "$work/reflector.json" 2>/dev/null; do sleep 0.05; done
ip netns exec bfdbenchA python3 - "$seconds" <<'PY'
import multiprocessing, socket, struct, sys, time
seconds = float(sys.argv[1])
def blast(index, result):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.connect(("127.0.0.1", 7784))
    s.setblocking(False)
    # State Up, Detect Mult 3, My Discriminator index+1, Your Discriminator 42 (RFC 7880).
    packet = struct.pack("!BBBBIIIII", 0x20, 0xC0, 3, 24, index + 1, 42, 1000, 0, 0)
    sent = got = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(64):
            try:
                s.send(packet); sent += 1
            except BlockingIOError:
                break
        while True:
            try:
                s.recv(64); got += 1
            except BlockingIOError:
                break
    time.sleep(0.2)
    while True:
        try:
            s.recv(64); got += 1
        except BlockingIOError:
            break
    result.put((sent, got))
result = multiprocessing.Queue()
procs = [multiprocessing.Process(target=blast, args=(i, result)) for i in range(3)]
for p in procs: p.start()
totals = [result.get() for _ in procs]
for p in procs: p.join()
sent = sum(t[0] for t in totals); got = sum(t[1] for t in totals)
print(f"sent {sent} ({sent/seconds:,.0f}/s), answers received {got} ({got/seconds:,.0f}/s), "
      f"{100*(sent-got)/max(sent,1):.1f} % unanswered (dropped by a full socket buffer)")
PY
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
pids=()
tail -n 1 "$work/reflector.json"
ip netns del bfdbenchA

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
ip netns exec bfdbenchB "$bin" bfd udp://10.78.0.1 --local 10.78.0.2 --min-tx 50ms \
  --min-rx 50ms --multiplier 3 --duration "$((seconds + 5))s" --quiet
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
    late = [max(0.0, g - 50.0) for g in gaps]
    early = sum(1 for g in gaps if g < 37.5)
    print(f"{name:10s} {len(gaps)} gaps: min {min(gaps):.3f} p50 {pct(gaps,.5):.3f} "
          f"p99 {pct(gaps,.99):.3f} max {max(gaps):.3f} ms; past 50 ms: p99 {pct(late,.99):.3f} "
          f"max {max(late):.3f} ms; under 37.5 ms: {early}")
'
