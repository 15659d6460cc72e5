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

hz=$(getconf CLK_TCK)
jd0=$(cpu_ticks "$jd"); ls0=$(cpu_ticks "$ls"); t0=$(date +%s.%N)
sleep "$seconds"
jd1=$(cpu_ticks "$jd"); ls1=$(cpu_ticks "$ls"); t1=$(date +%s.%N)

jd_reading=$(grep frames "$work/jack_delay.out" | tail -1 | awk '{print $1}')
ls_reading=$(grep frames "$work/loopscope.out" | tail -1 | awk '{print $1}')
python3 - "$jd0" "$jd1" "$ls0" "$ls1" "$t0" "$t1" "$hz" "$jd_reading" "$ls_reading" <<'PY'
import sys
jd0, jd1, ls0, ls1 = (int(x) for x in sys.argv[1:5])
t0, t1, hz = float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
jd_reading, ls_reading = float(sys.argv[8]), float(sys.argv[9])
wall = t1 - t0
jd_cpu = (jd1 - jd0) / hz / wall * 100
ls_cpu = (ls1 - ls0) / hz / wall * 100
print(f"over {wall:.1f} s at 48 kHz, period 256 (JACK dummy backend), same server:")
print(f"  jack_delay  {jd_reading:10.3f} frames   CPU {jd_cpu:5.2f} %")
print(f"  loopscope   {ls_reading:10.3f} frames   CPU {ls_cpu:5.2f} %")
print(f"  difference  {ls_reading - jd_reading:+10.3f} frames   CPU ratio loopscope/jack_delay {ls_cpu / jd_cpu if jd_cpu else float('nan'):.2f}")
PY
