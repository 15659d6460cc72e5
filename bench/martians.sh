#!/usr/bin/env bash
# Offline martian scan rate: loopscope martians vs tcpdump with the equivalent BPF filter, on the
# same generated 1-million-packet pcap, in the same run. Prints both times and the ratio
# (tcpdump time / loopscope time: >= 1.0 means loopscope is at least as fast).
#
#   bench/martians.sh [PACKETS]        (default 1000000; needs python3 and tcpdump)
set -euo pipefail
cd "$(dirname "$0")/.."
PACKETS=${1:-1000000}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PCAP="$WORK/martians-bench.pcap"

cargo build --release -q -p loopscope
BIN=target/release/loopscope

# 1 packet in 100 is martian (spoofed 127.0.0.1, ::1, 0.0.0.0/8, multicast or class E source,
# or a 127/8 destination); the rest is ordinary IPv4 UDP/TCP and IPv6 UDP over Ethernet.
python3 - "$PCAP" "$PACKETS" <<'PY'
import struct, sys
path, count = sys.argv[1], int(sys.argv[2])
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def v4(src, dst, proto, payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, 64, proto, 0, bytes(src), bytes(dst))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return b"\x08\x00", h + payload
def v6(src, dst, payload):
    return b"\x86\xdd", struct.pack("!IHBB16s16s", 0x60000000, len(payload), 17, 64, src, dst) + payload
udp = lambda sp, dp, n: struct.pack("!HHHH", sp, dp, 8 + n, 0) + b"x" * n
tcp = lambda sp, dp: struct.pack("!HHIIBBHHH", sp, dp, 1, 0, 0x50, 0x10, 65535, 0, 0)
mac = bytes.fromhex("020000000002020000000001")
LOOP6 = bytes(15) + b"\x01"
martians = [
    lambda i: v4([127, 0, 0, 1], [10, 0, 0, 2], 17, udp(4000, 53, 32)),
    lambda i: v6(LOOP6, bytes.fromhex("fd000000000000000000000000000002"), udp(4000, 53, 32)),
    lambda i: v4([0, 0, 0, 5], [10, 0, 0, 2], 17, udp(68, 67, 32)),
    lambda i: v4([224, 0, 0, 9], [10, 0, 0, 2], 17, udp(520, 520, 32)),
    lambda i: v4([241, 1, 2, 3], [10, 0, 0, 2], 6, tcp(1234, 80)),
    lambda i: v4([10, 0, 0, 1], [127, 0, 0, 1], 6, tcp(1234, 22)),
]
with open(path, "wb") as out:
    out.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
    for i in range(count):
        if i % 100 == 50:
            et, ip = martians[(i // 100) % len(martians)](i)
        elif i % 10 == 3:
            et, ip = v6(bytes.fromhex("fd00000000000000000000000000%04x" % (i % 65536)), bytes.fromhex("fd000000000000000000000000000001"), udp(40000 + i % 1000, 443, 64))
        elif i % 2:
            et, ip = v4([10, 1, (i >> 8) & 255, i & 255], [10, 0, 0, 2], 6, tcp(1024 + i % 60000, 443))
        else:
            et, ip = v4([10, 2, (i >> 8) & 255, i & 255], [10, 0, 0, 2], 17, udp(1024 + i % 60000, 53, 40))
        frame = mac + et + ip
        out.write(struct.pack("<IIII", 1700000000 + i // 100000, (i * 10) % 1000000, len(frame), len(frame)))
        out.write(frame)
PY
ls -l "$PCAP" | awk '{print "pcap:", $5, "bytes"}'

# The same rules as a BPF filter (IPv4 RFC 1812 5.3.7 sources and destinations, documentation
# ranges, and the IPv6 source/destination rules tcpdump can express).
FILTER='(ip and (src net 127.0.0.0/8 or src net 0.0.0.0/8 or src net 224.0.0.0/4 or src net 240.0.0.0/4
 or src net 192.0.2.0/24 or src net 198.51.100.0/24 or src net 203.0.113.0/24
 or dst net 127.0.0.0/8 or dst net 0.0.0.0/8 or dst net 240.0.0.0/4 or dst net 192.0.2.0/24
 or dst net 198.51.100.0/24 or dst net 203.0.113.0/24))
 or (ip6 and (src net ::/96 or src net ::ffff:0:0/96 or src net ff00::/8 or src net 2001:db8::/32
 or dst host ::1 or dst host :: or dst net ::ffff:0:0/96 or dst net 2001:db8::/32))'

# Warm the page cache, then 5 interleaved runs each. The machine is shared (load from other
# builds), so both wall time and CPU time (user + sys) are reported; the best of each is kept.
cat "$PCAP" >/dev/null
# (time prints "Command exited with non-zero status 1" first for our exit 1: keep the last line)
measure() { /usr/bin/time -f "%e %U %S" -o "$WORK/t" "$@" >/dev/null 2>&1 || true; tail -1 "$WORK/t"; }
: >"$WORK/ours"; : >"$WORK/theirs"
for _ in 1 2 3 4 5; do
  measure "$BIN" --json martians "$PCAP" >>"$WORK/ours"
  measure tcpdump -n -r "$PCAP" -w /dev/null "$FILTER" >>"$WORK/theirs"
done
best_wall() { awk '{print $1}' "$1" | sort -n | head -1; }
best_cpu() { awk '{printf "%.2f\n", $2 + $3}' "$1" | sort -n | head -1; }
# (exit status 1 means "martians found": expected here)
found=$({ "$BIN" --json martians --quiet "$PCAP" || true; } | tail -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["martian_packets"])')
matched=$(tcpdump -n -r "$PCAP" "$FILTER" 2>/dev/null | wc -l)
ours_wall=$(best_wall "$WORK/ours"); theirs_wall=$(best_wall "$WORK/theirs")
ours_cpu=$(best_cpu "$WORK/ours"); theirs_cpu=$(best_cpu "$WORK/theirs")
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
printf 'packets: %s   martian (loopscope): %s   matched (tcpdump): %s\n' "$PACKETS" "$found" "$matched"
printf 'loopscope martians --json FILE      wall %5.2f s  cpu %5.2f s\n' "$ours_wall" "$ours_cpu"
printf 'tcpdump -r FILE -w /dev/null FILTER  wall %5.2f s  cpu %5.2f s\n' "$theirs_wall" "$theirs_cpu"
printf 'ratio (tcpdump / loopscope, >= 1.0 means loopscope is as fast or faster): wall %.2f  cpu %.2f\n' \
  "$(echo "$theirs_wall / $ours_wall" | bc -l)" "$(echo "$theirs_cpu / $ours_cpu" | bc -l)"
