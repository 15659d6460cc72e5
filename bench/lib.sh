# Shared by the bench scripts: `source "$(dirname "$0")/lib.sh"` after `set -euo pipefail`.
# It moves to the repository root and gives the building, the peer-tool checks, the child
# processes ended at exit, ports, waits and CPU readings that every comparison needs alike.

cd "$(dirname "$0")/.."

# build_loopscope [CARGO-FEATURES]: sets `bin`. LOOPSCOPE_BIN names a binary built already
# (with those features), which skips the release build.
build_loopscope() {
  if [ -z "${LOOPSCOPE_BIN:-}" ]; then
    cargo build --release -q -p loopscope ${1:+--features "$1"}
  fi
  bin=${LOOPSCOPE_BIN:-$PWD/target/release/loopscope}
}

# require PROGRAM PACKAGE: exit 2 with the package to install when PROGRAM is missing.
require() {
  command -v "$1" >/dev/null || { echo "$1 is not installed (apt-get install $2)"; exit 2; }
}

# Children started with `track PID` get SIGTERM at exit (never SIGKILL: a killed jackd leaves
# its slot in JACK's server registry). A script that must end something else first defines
# `before_cleanup`.
pids=()
track() { pids+=("$1"); }
cleanup() {
  if declare -F before_cleanup >/dev/null; then before_cleanup; fi
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${work:-}" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

# free_port [udp]: a port on 127.0.0.1 nobody uses right now.
free_port() {
  python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1:]==["udp"] else socket.SOCK_STREAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$@"
}

# wait_listen PORT: until something listens on TCP PORT (5 s at most, then exit 2).
wait_listen() {
  for _ in $(seq 100); do ss -ltn | grep -q ":$1 " && return 0; sleep 0.05; done
  echo "nothing listens on $1"; exit 2
}

# reflector_endpoint FILE: waits for the `listening` line of a `loopscope --json reflect`
# writing to FILE (10 s at most) and prints its endpoint.
reflector_endpoint() {
  for _ in $(seq 100); do grep -q listening "$1" && break; sleep 0.1; done
  python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["endpoint"])' "$1"
}

# cpu_ticks PID: the CPU time PID has used (user + system), in clock ticks (getconf CLK_TCK).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# cpu_percent SECONDS PID...: waits SECONDS and prints the wall time it took, then each PID's
# CPU use over it in percent of one core (user + system, from /proc/PID/stat).
cpu_percent() {
  local seconds=$1 pid before=() after=() t0 t1
  shift
  for pid in "$@"; do before+=("$(cpu_ticks "$pid")"); done
  t0=$(date +%s.%N)
  sleep "$seconds"
  for pid in "$@"; do after+=("$(cpu_ticks "$pid")"); done
  t1=$(date +%s.%N)
  awk -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" -v before="${before[*]}" -v after="${after[*]}" 'BEGIN {
    n = split(before, b, " "); split(after, a, " "); wall = t1 - t0
    line = sprintf("%.3f", wall)
    for (i = 1; i <= n; i++) line = line sprintf(" %.4f", (a[i] - b[i]) / hz / wall * 100)
    print line
  }'
}

# start_jackd: a jackd on the dummy backend (48 kHz, 256-frame periods, no sound card needed)
# named $JACK_DEFAULT_SERVER, logging to $work/jackd.log; returns once it answers.
start_jackd() {
  jackd --no-realtime -n "$JACK_DEFAULT_SERVER" -d dummy -r 48000 -p 256 >"$work/jackd.log" 2>&1 &
  track $!
  jack_wait -w -t 60 >/dev/null 2>&1
}
