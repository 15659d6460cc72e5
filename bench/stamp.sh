#!/usr/bin/env bash
# STAMP benchmarks (issue 14), one run, printed with the load average beside each figure:
#  0. the host's own wake-up latency on each CPU (cyclictest), the floor under the tails of 3;
#  1. round trip on loopback: `loopscope stamp` beside `loopscope ping udp://` and iputils ping,
#     COUNT probes each at INTERVAL, one after the other (goal: STAMP p50 <= 1.1 x ping udp://);
#  2. the reflector's rate on one core: `reflect --stamp` pinned to CPU 0, examples/stamp_load
#     (Rust, sendmmsg/recvmmsg, a window of 1024 outstanding) sending 44-octet requests from
#     CPU 1 for SECONDS (goal: >= 500,000 answered a second); then the peer, sockperf's server
#     (a plain UDP echo: no timestamps, no rules) pinned the same way, under the same load from
#     examples/sockperf_load (the same generator, 44-octet sockperf messages): what this host
#     allows, and ours / peer;
#  3. 100,000 packets a second for SECONDS from our sender (CPU 1) to the reflector (CPU 0):
#     the reflector's p99 residence (goal <= 20 us), and the sender's schedule: every packet
#     sent, none skipped, p99 lateness against start + k x interval (goal <= 5 us).
# Scheduling: run as root, every process of section 2 runs under SCHED_FIFO (ours with its own
# --realtime option, sockperf and the generators under `chrt -f 10`), and section 3 runs twice,
# as ordinary tasks and then under SCHED_FIFO; the script says which; STAMP_BENCH_REALTIME=0
# (or not root) runs everything as ordinary tasks. An ordinary task that never sleeps shares
# its CPU with every other runnable task, and on Linux with autogroups
# (sched_autogroup_enabled) with every other session, however niced, in slices of a scheduler
# tick (4 ms at 250 Hz): the stalls of milliseconds in the tails. Under SCHED_FIFO
# the kernel still gives ordinary tasks that have waited 50 ms of each second on each CPU (the
# fair server, sched_rt_runtime_us), so a busy host stalls even a realtime sender that long.
# Release binaries (built if missing) unless LOOPSCOPE_BIN / STAMP_LOAD_BIN / SOCKPERF_LOAD_BIN
# name others.
# Usage: bench/stamp.sh [COUNT] [INTERVAL_S] [SECONDS]   (default 2000 0.001 10)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-2000}
interval=${2:-0.001}
seconds=${3:-10}
bin=${LOOPSCOPE_BIN:-$PWD/target/release/loopscope}
[ -x "$bin" ] || cargo build --release -q -p loopscope
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
load() { cut -d' ' -f1-3 /proc/loadavg; }
wait_listening() { until grep -qsE 'reflecting on|listening on|"listening"' "$1"; do sleep 0.05; done; }
# Ends a reflector with SIGINT and waits for it (in this shell: `wait` in a subshell would not).
finish() { kill -INT "$1"; wait "$1" 2>/dev/null || true; }

echo "== 0. this host's own scheduling latency (cyclictest, rt-tests; load $(load))"
# The floor under every tail below: how late a thread of the highest priority wakes on each CPU
# of this host with nothing else of ours running. A residence or lateness p99 cannot be shorter
# than the stalls the host itself imposes.
if command -v cyclictest > /dev/null && [ "$(id -u)" = 0 ]; then
    cyclictest -m -t2 -a 0,1 -p 90 -i 100 -D "$seconds" -q -h 30000 > "$work/cyclictest.txt" 2>/dev/null || true
    python3 - "$work/cyclictest.txt" <<'PY'
import sys
rows = [line.split() for line in open(sys.argv[1]) if line[:1].isdigit()]
for cpu in (1, 2):
    total = sum(int(r[cpu]) for r in rows)
    if not total:
        continue
    marks, seen = {}, 0
    for r in rows:
        seen += int(r[cpu])
        for p in (0.5, 0.99, 0.999):
            if p not in marks and seen >= p * total:
                marks[p] = int(r[0])
    late = sum(int(r[cpu]) for r in rows if int(r[0]) >= 1000)
    worst = max((int(r[0]) for r in rows if int(r[cpu])), default=0)
    print(f"CPU {cpu - 1}: {total} wake-ups every 100 us at SCHED_FIFO 90: p50 {marks[0.5]} us, p99 {marks[0.99]} us, p99.9 {marks[0.999]} us, max >= {worst} us; {late} of them 1 ms or more late")
PY
else
    echo "(not run: needs cyclictest from rt-tests, and root)"
fi

echo "== 1. round trip on loopback ($count probes at ${interval}s; load $(load))"
"$bin" stamp --reflect udp://127.0.0.1:18620 > "$work/stamp.log" 2>&1 & pids+=($!)
"$bin" reflect udp://127.0.0.1:18007 --rate-limit 0 > "$work/reflect.log" 2>&1 & pids+=($!)
wait_listening "$work/stamp.log"; wait_listening "$work/reflect.log"
stamp=$("$bin" --json stamp udp://127.0.0.1:18620 -c "$count" -i "${interval}s" -q | tail -1 || true)
lping=$("$bin" --json ping udp://127.0.0.1:18007 -c "$count" -i "$interval" -q | tail -1 || true)
iping=$(ping -c "$count" -i "$interval" -q 127.0.0.1 | tail -1)
python3 - "$stamp" "$lping" "$iping" <<'PY'
import json, sys
stamp, lping, iping = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
mn, avg, mx, mdev = [float(x) for x in iping.split('=')[1].split()[0].split('/')]
print(f"stamp (kernel T1/T4: {stamp['timestamp_source']}): rtt p50 {stamp['rtt_p50_us']:.1f} us, min {stamp['rtt_min_us']:.1f}, p99 {stamp['rtt_p99_us']:.1f}; rtt_net p50 {stamp['rtt_net_p50_us']:.1f}; {stamp['received']}/{stamp['transmitted']}")
print(f"loopscope ping udp://: rtt p50 {lping['rtt_p50_us']:.1f} us, min {lping['rtt_min_us']:.1f}, p99 {lping['rtt_p99_us']:.1f}")
print(f"iputils ping 127.0.0.1: min {mn*1000:.1f} us, avg {avg*1000:.1f} us, max {mx*1000:.1f} us")
ratio = stamp['rtt_p50_us'] / lping['rtt_p50_us']
print(f"ratio stamp p50 / loopscope ping udp p50 = {ratio:.2f} (goal <= 1.1: {'met' if ratio <= 1.1 else 'MISSED'})")
PY
for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=()

realtime=${STAMP_BENCH_REALTIME:-1}
[ "$(id -u)" = 0 ] || realtime=0
if [ "$realtime" = 1 ]; then
    fifo=(chrt -f 10); ours_rt=(--realtime)
    echo "(section 2 runs under SCHED_FIFO: ours with --realtime, the rest with chrt -f 10; section 3 as ordinary tasks, then under SCHED_FIFO)"
else
    fifo=(); ours_rt=()
    echo "(sections 2 and 3 run as ordinary tasks)"
fi
echo "   runnable tasks now: $(awk '/procs_running/ {print $2}' /proc/stat); autogroups: $(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo '?')"

echo "== 2. reflector rate on one core (${seconds} s of examples/stamp_load, window 1024; load $(load))"
# sockperf's own client offers some 300,000 datagrams a second from one thread, below the goal:
# the Rust generators keep a window of requests outstanding with sendmmsg/recvmmsg (as
# bench/bfd.sh's sbfd_load) and count the replies of their own session; the server's CPU time
# from /proc gives the answers per CPU-second whatever else runs.
gen=${STAMP_LOAD_BIN:-$PWD/target/release/examples/stamp_load}
[ -x "$gen" ] || cargo build --release -q -p loopscope-measure --example stamp_load
peer_gen=${SOCKPERF_LOAD_BIN:-$PWD/target/release/examples/sockperf_load}
[ -x "$peer_gen" ] || cargo build --release -q -p loopscope-measure --example sockperf_load
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
taskset -c 0 "$bin" --json reflect --stamp udp://127.0.0.1:18621 --rate-limit 0 "${ours_rt[@]}" > "$work/rate.log" 2>&1 & rpid=$!; pids+=($rpid)
wait_listening "$work/rate.log"
before=$(cpu "$rpid")
taskset -c 1 "${fifo[@]}" "$gen" 127.0.0.1:18621 "$seconds" 1 1024 > "$work/load.json"
after=$(cpu "$rpid")
finish "$rpid"; pids=(); summary=$(tail -1 "$work/rate.log")
peer_load="(not run: no sockperf)"
if command -v sockperf > /dev/null; then
    echo "   peer: sockperf server on CPU 0, examples/sockperf_load from CPU 1 (load $(load))"
    taskset -c 0 "${fifo[@]}" sockperf server -i 127.0.0.1 -p 18623 > "$work/sockperf.log" 2>&1 & spid=$!; pids+=($spid)
    until grep -qs 'using' "$work/sockperf.log"; do sleep 0.05; done
    peer_before=$(cpu "$spid")
    taskset -c 1 "${fifo[@]}" "$peer_gen" 127.0.0.1:18623 "$seconds" 1 1024 > "$work/peer.json"
    peer_after=$(cpu "$spid")
    kill "$spid"; wait "$spid" 2>/dev/null || true; pids=()
    peer_load=$(cat "$work/peer.json")
fi
python3 - "$summary" "$(cat "$work/load.json")" "$before" "$after" "$ticks" "$peer_load" "${peer_before:-0}" "${peer_after:-0}" <<'PY'
import json, sys
s, load = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ticks = float(sys.argv[5])
cpu_s = (float(sys.argv[4]) - float(sys.argv[3])) / ticks
pps = load['answered_per_s']
print(f"ours: stamp_load sent {load['sent']}, got {load['answered']} replies in {load['seconds']:.1f} s; reflector received {s['received']}, answered {s['reflected']}: {pps:,.0f} per second on one core (goal >= 500,000: {'met' if pps >= 500000 else 'MISSED'}); it used {cpu_s:.2f} s of CPU, {load['answered'] / max(cpu_s, 1e-9):,.0f} answers per CPU-second")
if sys.argv[6].startswith('{'):
    peer = json.loads(sys.argv[6])
    peer_cpu = (float(sys.argv[8]) - float(sys.argv[7])) / ticks
    ppps = peer['answered_per_s']
    print(f"peer (sockperf server, plain echo): sockperf_load sent {peer['sent']}, got {peer['answered']} replies: {ppps:,.0f} per second on one core; it used {peer_cpu:.2f} s of CPU, {peer['answered'] / max(peer_cpu, 1e-9):,.0f} answers per CPU-second")
    print(f"ratio ours / peer = {pps / max(ppps, 1e-9):.2f} (answers a second), {(load['answered'] / max(cpu_s, 1e-9)) / max(peer['answered'] / max(peer_cpu, 1e-9), 1e-9):.2f} (answers per CPU-second)")
else:
    print("peer: " + sys.argv[6])
PY

rate_count=$((seconds * 100000))
# Section 3 runs twice when realtime is on: as ordinary tasks first, then under SCHED_FIFO. On an
# idle host the ordinary run is the better one (a realtime sender that spins for the whole run
# is stopped for the fair server's 50 ms each second); under competing load the realtime one.
schedules=(ordinary)
[ "$realtime" = 1 ] && schedules+=(fifo)
for schedule in "${schedules[@]}"; do
if [ "$schedule" = fifo ]; then rt=("${ours_rt[@]}"); else rt=(); fi
echo "== 3. 100,000 packets/s for ${seconds} s, sender on CPU 1, reflector on CPU 0, $schedule scheduling (load $(load))"
taskset -c 0 "$bin" --json reflect --stamp udp://127.0.0.1:18622 --rate-limit 0 "${rt[@]}" > "$work/res.log" 2>&1 & rpid=$!; pids+=($rpid)
wait_listening "$work/res.log"
sender=$(taskset -c 1 "$bin" --json stamp udp://127.0.0.1:18622 -c "$rate_count" -i 10us -q "${rt[@]}" | tail -1 || true)
finish "$rpid"; pids=(); summary=$(tail -1 "$work/res.log")
python3 - "$sender" "$summary" "$rate_count" <<'PY'
import json, sys
s, r, wanted = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
print(f"sender: {s['transmitted']}/{wanted} sent, {s['send_errors']} send errors, {s['received']} answered; achieved interval {s['achieved_interval_us']} us; send lateness p50 {s['send_lag_p50_us']} p99 {s['send_lag_p99_us']} max {s['send_lag_max_us']} us (goal p99 <= 5: {'met' if s['send_lag_p99_us'] <= 5 else 'MISSED'}; no skip: {'met' if s['transmitted'] == wanted and s['send_errors'] == 0 else 'MISSED'})")
print(f"reflector residence (T3 - T2) p50 {s['residence_p50_us']} p99 {s['residence_p99_us']} max {s['residence_max_us']} us (goal p99 <= 20: {'met' if s['residence_p99_us'] is not None and s['residence_p99_us'] <= 20 else 'MISSED'}); reflector answered {r['reflected']} of {r['received']}")
PY
done
echo "load at the end: $(load)"
