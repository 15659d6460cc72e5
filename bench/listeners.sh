#!/usr/bin/env bash
# `loopscope listeners --json` beside `ss -tulpn` over the same 10,000 listening sockets, in the
# same run. A Python helper opens the sockets (TCP listeners on 127.0.0.1, port 0) and holds
# them; both tools then list every socket and resolve every owner through /proc.
# Usage: bench/listeners.sh [SOCKETS] [RUNS]    (default 10000 sockets, 10 runs each)
# Set LOOPSCOPE=path to time an already built binary instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
sockets=${1:-10000}
runs=${2:-10}
if [[ -z "${LOOPSCOPE:-}" ]]; then
    cargo build --release -q -p loopscope
    LOOPSCOPE=target/release/loopscope
fi
command -v ss >/dev/null || { echo "ss (iproute2) is needed" >&2; exit 2; }

fifo=$(mktemp -u)
mkfifo "$fifo"
python3 - "$sockets" >"$fifo" <<'PY' &
import resource, socket, sys, time
count = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = count + 64
if soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want, hard))
held = []
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    held.append(s)
print("READY", flush=True)
time.sleep(3600)
PY
holder=$!
trap 'kill $holder 2>/dev/null; rm -f "$fifo"' EXIT
read -r ready <"$fifo"
[[ "$ready" == READY ]] || { echo "socket holder failed" >&2; exit 2; }

listed=$("$LOOPSCOPE" listeners --json | tail -n1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["sockets"])')
ss_listed=$(ss -tuln | tail -n +2 | wc -l)
echo "sockets held: $sockets; loopscope lists $listed, ss lists $ss_listed"

if command -v hyperfine >/dev/null; then
    out=$(mktemp)
    hyperfine -N --warmup 2 --runs "$runs" --export-json "$out" \
        "$LOOPSCOPE listeners --json" "ss -tulpn" >&2 || hyperfine --warmup 2 --runs "$runs" \
        --export-json "$out" "$LOOPSCOPE listeners --json >/dev/null" "ss -tulpn >/dev/null" >&2
    read -r ours peer < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print(r[0]["mean"], r[1]["mean"])' "$out")
    rm -f "$out"
else
    time_it() {
        local start end
        start=$(date +%s%N)
        for _ in $(seq "$runs"); do "$@" >/dev/null; done
        end=$(date +%s%N)
        python3 -c "print(($end-$start)/1e9/$runs)"
    }
    "$LOOPSCOPE" listeners --json >/dev/null; ss -tulpn >/dev/null
    ours=$(time_it "$LOOPSCOPE" listeners --json)
    peer=$(time_it ss -tulpn)
fi
python3 - "$ours" "$peer" <<'PY'
import sys
ours, peer = map(float, sys.argv[1:])
print(f"loopscope listeners --json: {ours*1e3:.1f} ms")
print(f"ss -tulpn:                  {peer*1e3:.1f} ms")
print(f"ratio loopscope/ss: {ours/peer:.2f} (goal <= 1.00)")
PY
