#!/usr/bin/env bash
# audio-latency over a JACK loop beside jack_delay on the same server, in the same run: the
# delay each reads and the CPU each uses (from /proc/PID/stat, user + system).
#
# jackd runs the dummy backend (48 kHz, 256-frame periods, no sound card needed); each tool's
# output is wired to its own input. Needs jackd2, jack-delay and libjack-jackd2-dev (Debian).
# Usage: bench/audio_jack.sh [SECONDS]   (default 30)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
seconds=${1:-30}
build_loopscope jack

export JACK_DEFAULT_SERVER="loopscope-bench-$$" JACK_NO_START_SERVER=1
work=$(mktemp -d)
start_jackd

jack_delay >"$work/jack_delay.out" 2>/dev/null &
jd=$!
track "$jd"
until grep -q . "$work/jack_delay.out"; do sleep 0.1; done
jack_connect jack_delay:out jack_delay:in

"$bin" audio-latency 'jack:?connect=loop' >"$work/loopscope.out" 2>&1 &
ls=$!
track "$ls"
until grep -q frames "$work/loopscope.out"; do sleep 0.1; done

read -r wall jd_cpu ls_cpu < <(cpu_percent "$seconds" "$jd" "$ls")

jd_reading=$(grep frames "$work/jack_delay.out" | tail -1 | awk '{print $1}')
ls_reading=$(grep frames "$work/loopscope.out" | tail -1 | awk '{print $1}')
python3 - "$wall" "$jd_cpu" "$ls_cpu" "$jd_reading" "$ls_reading" <<'PY'
import sys
wall, jd_cpu, ls_cpu, jd_reading, ls_reading = (float(x) for x in sys.argv[1:6])
print(f"over {wall:.1f} s at 48 kHz, period 256 (JACK dummy backend), same server:")
print(f"  jack_delay  {jd_reading:10.3f} frames   CPU {jd_cpu:5.2f} %")
print(f"  loopscope   {ls_reading:10.3f} frames   CPU {ls_cpu:5.2f} %")
print(f"  difference  {ls_reading - jd_reading:+10.3f} frames   CPU ratio loopscope/jack_delay {ls_cpu / jd_cpu if jd_cpu else float('nan'):.2f}")
PY
