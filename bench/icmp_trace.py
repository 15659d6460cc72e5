#!/usr/bin/env python3
"""Where an ICMP round trip on loopback goes, per pinger, from kernel trace events.

The exporter (bursts of 5 requests, one burst every 5 spacings), `loopscope ping icmp://` and
iputils `ping -i 0.01` take turns on 127.0.0.1, all sending every 16 ms, under
`perf record -a` with these tracepoints: syscalls:sys_enter_sendto / sys_exit_sendto (every
pinger sends with sendto(2)), net:netif_rx (on lo the request and then the reply are each queued
by netif_rx(); the reply's queueing time is the receive timestamp the pingers read) and
power:cpu_idle (when the CPU entered and left its idle state before the send).

On loopback the whole round trip happens inside the sendto() call on the sending CPU: the
request is queued on lo, the softirq run when the call re-enables bottom halves answers it, and
the reply is queued before the call returns. So per send this prints, as medians:
  idle before: how long the CPU idled before the send (none on a loaded machine);
  idle exit -> sendto: from the CPU leaving idle to the send call;
  sendto -> request: the send path up to lo;
  request -> reply: the kernel's echo on lo (the capture's figure);
  sendto -> reply: the round trip minus the few us between the pinger's clock read and the
  system call.
For the exporter also by position in the burst: its first request follows the probe's own set-up
(thread hand-over, socket, connect), the others a 16 ms wait like every request of the others.

The tracepoints slow every send a little, the same for all; this is a diagnosis, not the
benchmark (that is bench/exporter.py). Run as root, at normal priority, under the bench lock:
    flock /work/bench.lock python3 bench/icmp_trace.py BINARY [--turn 3] [--rounds 4] [--no-deep-idle]
--no-deep-idle holds /dev/cpu_dma_latency at 0 for the whole run (cpuidle only polls).
"""

import argparse
import os
import re
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

SPACING_US = 16000


def median(values):
    return statistics.median(values) if values else float("nan")


def exporter_turn(binary, config, turn, pids):
    proc = subprocess.Popen([binary, "exporter", "--config", config, "--listen", "127.0.0.1:0"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    pids.add(proc.pid)
    line = proc.stderr.readline()
    match = re.search(r"http://(\S+)", line)
    if not match:
        proc.kill()
        sys.exit(f"the exporter did not start: {line}")
    time.sleep(turn)
    text = urllib.request.urlopen(f"http://{match.group(1)}/metrics", timeout=30).read().decode()
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    total = count = 0.0
    for metric in text.splitlines():
        if metric.startswith("loopscope_probe_rtt_seconds_sum"):
            total = float(metric.split()[-1])
        elif metric.startswith("loopscope_probe_rtt_seconds_count"):
            count = float(metric.split()[-1])
    return [total / count * 1e6] * int(count) if count else []


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("binary")
    parser.add_argument("--turn", type=int, default=3, help="seconds per turn")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--no-deep-idle", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (raw ICMP sockets, perf record -a)")
    work = tempfile.mkdtemp()
    config = os.path.join(work, "exporter.toml")
    buckets = ", ".join(f"{us}e-6" for us in range(1, 1001))
    with open(config, "w") as f:
        f.write("[modules.burst]\nprober = \"icmp\"\npackets = 5\n"
                f"spacing = \"{SPACING_US}us\"\ntimeout = \"1s\"\nrtt_buckets = [{buckets}]\n"
                "[[targets]]\nname = \"lo\"\nmodule = \"burst\"\n"
                f"target = \"127.0.0.1\"\ninterval = \"{5 * SPACING_US}us\"\n")
    latency = None
    if args.no_deep_idle:
        latency = open("/dev/cpu_dma_latency", "wb", buffering=0)
        latency.write(struct.pack("i", 0))
    data = os.path.join(work, "perf.data")
    perf = subprocess.Popen(
        ["perf", "record", "-q", "-a", "-k", "CLOCK_MONOTONIC", "-o", data,
         "-e", "power:cpu_idle", "-e", "net:netif_rx", "-e", "syscalls:sys_enter_sendto",
         "-e", "syscalls:sys_exit_sendto", "-e", "syscalls:sys_enter_connect"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)  # perf has no "ready" line; its set-up takes well under this
    load_before = open("/proc/loadavg").read().split()[:3]
    # Only our pingers' processes: other programs on a shared machine send too.
    windows, figures, pids = {}, {}, set()
    tools = ["exporter", "cli", "iputils"]
    for round_index in range(args.rounds):
        shift = round_index % len(tools)
        for tool in tools[shift:] + tools[:shift]:
            began = time.monotonic()
            if tool == "exporter":
                values = exporter_turn(args.binary, config, args.turn, pids)
            else:
                command = ([args.binary, "ping", "icmp://127.0.0.1", "-i", f"{SPACING_US}us",
                            "-w", f"{args.turn}s"] if tool == "cli" else
                           ["ping", "-n", "-i", "0.01", "-w", str(args.turn), "127.0.0.1"])
                proc = subprocess.Popen(command, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
                pids.add(proc.pid)
                out = proc.communicate()[0]
                values = [float(ms) * 1000 for ms in re.findall(r"time=([\d.]+) ms", out)]
            windows.setdefault(tool, []).append((began, time.monotonic()))
            figures.setdefault(tool, []).extend(values)
    perf.send_signal(signal.SIGINT)
    perf.wait()
    if latency:
        latency.close()
    script = subprocess.run(["perf", "script", "-i", data, "--ns",
                             "-F", "comm,pid,tid,cpu,time,event,trace"],
                            capture_output=True, text=True).stdout
    pattern = re.compile(
        r"^\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)$")
    idle_enter, idle_exit, open_send, sends, connected = {}, {}, {}, [], {}
    for line in script.splitlines():
        match = pattern.match(line)
        if not match:
            continue
        comm, pid, tid, cpu, at, event, rest = match.groups()
        comm, tid, cpu, at, event = comm.strip(), int(tid), int(cpu), float(at), event.rstrip(":")
        if event == "power:cpu_idle":
            state = int(re.search(r"state=(\d+)", rest).group(1))
            (idle_exit if state == 4294967295 else idle_enter)[cpu] = at
        elif event == "syscalls:sys_enter_connect":
            connected[tid] = at  # an exporter probe opens and connects its socket, then sends
        elif event == "syscalls:sys_enter_sendto":
            # The exporter's requests leave from its probe threads (its HTTP server sends too).
            if int(pid) in pids and (comm in ("loopscope", "ping") or comm.startswith("probe-")):
                open_send[cpu] = {"tid": tid, "enter": at, "queued": [],
                                  "connected": connected.get(tid),
                                  "idle_enter": idle_enter.get(cpu),
                                  "idle_exit": idle_exit.get(cpu)}
        elif event == "net:netif_rx":
            send = open_send.get(cpu)
            if send and len(send["queued"]) < 2:
                send["queued"].append(at)
        elif event == "syscalls:sys_exit_sendto":
            send = open_send.pop(cpu, None)
            if send and send["tid"] == tid:
                send["complete"] = len(send["queued"]) == 2
                sends.append(send)
    by_tool = {}
    for send in sends:
        tool = next((name for name, spans in windows.items()
                     for first, last in spans if first <= send["enter"] <= last), None)
        if tool:
            by_tool.setdefault(tool, []).append(send)
    print(f"load average {' '.join(load_before)} -> "
          f"{' '.join(open('/proc/loadavg').read().split()[:3])}; "
          f"{'no deep idle (/dev/cpu_dma_latency 0)' if args.no_deep_idle else 'idle as is'}")

    def us(a, b):
        return (b - a) * 1e6

    for tool in ("exporter", "cli", "iputils"):
        rows = by_tool.get(tool, [])
        if not rows:
            continue
        # Whether the request and its reply were both queued on lo inside the send call.
        print(f"{tool}: {sum(r['complete'] for r in rows)} of {len(rows)} sendto() calls "
              f"queued the request and the reply before returning")
        rows = [r for r in rows if r["complete"]]
        # The CPU woke for this send when it left idle at most 1 ms before it.
        after_idle = [r for r in rows if r["idle_enter"] and r["idle_exit"]
                      and r["idle_enter"] < r["idle_exit"] < r["enter"]
                      and r["enter"] - r["idle_exit"] < 1e-3]
        idle = [us(r["idle_enter"], r["idle_exit"]) / 1000 for r in after_idle]
        woke = [us(r["idle_exit"], r["enter"]) for r in after_idle]
        total = [us(r["enter"], r["queued"][1]) for r in rows]
        print(f"{tool}: {len(rows)} sends; idle before {median(idle):.2f} ms "
              f"({len(idle)} after idle), idle exit -> sendto {median(woke):.1f} us, "
              f"sendto -> request {median([us(r['enter'], r['queued'][0]) for r in rows]):.1f}"
              f" us, request -> reply {median([us(*r['queued']) for r in rows]):.1f} us, "
              f"sendto -> reply {median(total):.1f} us (mean {statistics.mean(total):.1f}); "
              f"its own figures: median {median(figures[tool]):.1f} us, mean "
              f"{statistics.mean(figures[tool]) if figures[tool] else float('nan'):.1f} us"
              f"{' (the exporter: mean only)' if tool == 'exporter' else ''}")
    # Position in the burst: requests since the probe connected its socket, 16 ms apart.
    positions = {}
    for row in by_tool.get("exporter", []):
        if row["connected"] is not None and row["complete"]:
            position = 1 + round((row["enter"] - row["connected"]) / (SPACING_US / 1e6))
            if position <= 5:  # beyond: sends that came late, not a position
                positions.setdefault(position, []).append(us(row["enter"], row["queued"][1]))
    if positions:
        print("exporter, sendto -> reply by position in the burst (median us, sends): " +
              ", ".join(f"{p}: {median(v):.1f} ({len(v)})" for p, v in sorted(positions.items())))


if __name__ == "__main__":
    main()
