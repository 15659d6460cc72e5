#!/usr/bin/env bash
# Ethernet loopback round trip beside iputils `ping` over the same veth, in the same run: two
# network namespaces of its own joined by a veth; `loopscope reflect --eth-lb` on one end
# answers LBMs in user space, the kernel answers ICMP echo. Alternating rounds of 20 requests
# 10 ms apart from each tool; prints the median of all replies for each and their ratio. The
# far ends differ (a user-space responder on a packet socket against the kernel's ICMP
# responder), so the ratio is the cost of that, not a goal. Needs root, iproute2 and iputils.
# Usage: bench/eth_lb.sh [ROUNDS]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-10}
command -v ping >/dev/null || { echo "iputils ping is not installed (apt-get install iputils-ping)"; exit 2; }
# LOOPSCOPE_BIN: a binary built already (skips the release build).
if [ -z "${LOOPSCOPE_BIN:-}" ]; then cargo build --release -q -p loopscope; fi
bin=${LOOPSCOPE_BIN:-$PWD/target/release/loopscope}
a="lselb-bench-a-$$" b="lselb-bench-b-$$"
work=$(mktemp -d)
cleanup() {
  kill -TERM "${reflector:-0}" 2>/dev/null || true
  wait 2>/dev/null || true
  ip netns del "$a" 2>/dev/null || true
  ip netns del "$b" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$a"
ip netns add "$b"
ip link add vA netns "$a" type veth peer name vB netns "$b"
ip -n "$a" addr add 10.199.0.1/30 dev vA
ip -n "$b" addr add 10.199.0.2/30 dev vB
ip -n "$a" link set vA up
ip -n "$b" link set vB up
ip netns exec "$b" "$bin" reflect --eth-lb vB --level 2 --rate-limit 0 >"$work/reflector.log" 2>&1 &
reflector=$!
until grep -q "reflecting on" "$work/reflector.log"; do sleep 0.01; done
mac=$(ip -n "$b" -br link show vB | awk '{print $3}')
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$work/ping.us"
: >"$work/eth.us"
for _ in $(seq "$rounds"); do
  ip netns exec "$a" ping -n -c 20 -i 0.01 10.199.0.2 |
    sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' | awk '{ printf "%.3f\n", $1 * 1000 }' >>"$work/ping.us"
  ip netns exec "$a" "$bin" --json eth-lb vA --to "$mac" --level 2 -c 20 -i 10ms |
    sed -n 's/.*"type":"reply".*"rtt_us":\([0-9.]*\).*/\1/p' >>"$work/eth.us"
done
median() { sort -n "$1" | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ping_median=$(median "$work/ping.us")
eth_median=$(median "$work/eth.us")
echo "iputils ping (kernel ICMP echo): $(wc -l <"$work/ping.us") replies, median ${ping_median} us"
echo "loopscope eth-lb (LBM/LBR, user-space responder): $(wc -l <"$work/eth.us") replies, median ${eth_median} us"
awk -v e="$eth_median" -v p="$ping_median" 'BEGIN { printf "ratio eth-lb / ping: %.2f\n", e / p }'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
