#!/usr/bin/env bash
# audio-latency over ALSA beside alsa_delay on the same device path, in the same run: the delay
# each reads and the CPU each uses (from /proc/PID/stat, user + system).
#
# The device is libasound2-plugins' `jack` PCM on jackd's dummy backend (48 kHz, 256-frame
# periods, no sound card needed), two periods of buffering; each program's playback client is
# wired to its own capture client. Needs jackd2, zita-alsa-pcmi-utils, libasound2-plugins and
# libasound2-dev (Debian).
# Usage: bench/audio_alsa.sh [SECONDS]   (default 30)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
seconds=${1:-30}
build_loopscope alsa

export JACK_DEFAULT_SERVER="loopscope-bench-alsa-$$" JACK_NO_START_SERVER=1
work=$(mktemp -d)
# alsa_delay first, with SIGINT: on SIGTERM it dies without closing its JACK clients, and that
# leaves the server's slot taken in JACK's registry.
before_cleanup() { kill -INT "${ad:-0}" 2>/dev/null || true; }
start_jackd

# Wires PROGRAM.P.PID.0:out_000 to PROGRAM.C.PID.1:in_000 once both exist.
wire() {
  local out="" in=""
  until [ -n "$out" ] && [ -n "$in" ]; do
    sleep 0.05
    out=$(jack_lsp | grep "^$1\.P\.$2\..*:out_000$" || true)
    in=$(jack_lsp | grep "^$1\.C\.$2\..*:in_000$" || true)
  done
  jack_connect "$out" "$in"
}

stdbuf -oL alsa_delay jack jack 48000 256 2 1 1 >"$work/alsa_delay.out" 2>/dev/null &
ad=$!
track "$ad"
wire alsa_delay "$ad"

"$bin" audio-latency 'alsa:jack?format=f32&period=256&periods=2' >"$work/loopscope.out" 2>&1 &
ls=$!
track "$ls"
wire loopscope "$ls"
until grep -q frames "$work/loopscope.out" && grep -q frames "$work/alsa_delay.out"; do sleep 0.1; done

read -r wall ad_cpu ls_cpu < <(cpu_percent "$seconds" "$ad" "$ls")

ad_reading=$(grep frames "$work/alsa_delay.out" | tail -1 | awk '{print $1}')
ls_reading=$(grep frames "$work/loopscope.out" | tail -1 | awk '{print $1}')
python3 - "$wall" "$ad_cpu" "$ls_cpu" "$ad_reading" "$ls_reading" <<'PY'
import sys
wall, ad_cpu, ls_cpu, ad_reading, ls_reading = (float(x) for x in sys.argv[1:6])
print(f"over {wall:.1f} s through ALSA's jack PCM (jackd dummy, 48 kHz, 2 x 256 frames), same server:")
print(f"  alsa_delay  {ad_reading:10.3f} frames   CPU {ad_cpu:5.2f} %")
print(f"  loopscope   {ls_reading:10.3f} frames   CPU {ls_cpu:5.2f} %")
print(f"  difference  {ls_reading - ad_reading:+10.3f} frames (a whole period, 256, is the start phase; see docs/design.md)")
print(f"  CPU ratio loopscope/alsa_delay {ls_cpu / ad_cpu if ad_cpu else float('nan'):.2f}")
PY
