#!/usr/bin/env bash
# End-to-end BERT throughput over the in-memory loop and through a `cat` child process,
# beside a plain pipe copy of the same number of bytes (dd | cat) in the same run.
# Usage: bench/bert_loop.sh [BYTES]   (default 20G)
set -euo pipefail
cd "$(dirname "$0")/.."
bytes=${1:-20G}
cargo build --release -q -p loopscope
bin=target/release/loopscope

# (No quotes inside the f-string's braces: Python before 3.12 refuses them.)
rate() { python3 -c 'import json,sys; s=[json.loads(l) for l in sys.stdin][-1]; v=s["throughput_bps"]/1e9; print(f"{v:.2f}")'; }

loop_gbps=$($bin bert loop: --bytes "$bytes" --json | rate)
echo "loopscope bert loop:      ${loop_gbps} Gbit/s"

pipe_bytes=4G
cat_gbps=$($bin bert exec:cat --bytes "$pipe_bytes" --json | rate)
echo "loopscope bert exec:cat   ${cat_gbps} Gbit/s"

n=$(python3 -c "print(4*10**9 // 262144)")
start=$(date +%s%N)
dd if=/dev/zero bs=256k count="$n" status=none | cat >/dev/null
end=$(date +%s%N)
pipe_gbps=$(python3 -c "print(f'{4e9*8/(($end-$start)/1e9)/1e9:.2f}')")
echo "dd | cat (pipe, no check) ${pipe_gbps} Gbit/s"
python3 -c "print(f'ratio exec:cat / pipe copy: {$cat_gbps/$pipe_gbps:.2f}')"
