#!/usr/bin/env python3
"""loopscope exporter under load, and its ICMP RTT beside iputils ping (and blackbox_exporter).

Phase 1 (load): one exporter probes N targets (default 1,000; the addresses 127.0.x.y, all on
lo) every second with 5 ICMP echo requests each. Over the measured window it reports the
exporter's CPU (user + system from /proc/PID/stat, in % of one core), its scheduling lag p99
(from its own histogram, the difference of two scrapes: the upper bound of the bucket that
holds the 99th percentile), and its RSS (VmHWM, the peak). What the lag is made of: in the same
window, cyclictest (rt-tests) at the same nice level and scheduling policy measures how late
this machine wakes a thread that sleeps until a deadline, every 1 ms. That is the floor of any
scheduler that sleeps until a probe is due: an exporter lag near cyclictest's is the machine's,
one far above it is the exporter's.

Phase 2 (RTT): the exporter (one target on 127.0.0.1, bursts of 5 requests, one burst every
5 spacings, RTT histogram in 1 us buckets up to 1 ms), iputils `ping -i 0.01 127.0.0.1` and
`loopscope ping icmp://127.0.0.1` take turns, each alone on the machine for its turn, in a
rotating order, 6 rounds (`--rtt-seconds` in all per pinger and condition). All send equally
often: a short iputils run first measures how far apart its requests really go (on a 250 Hz
kernel 16 ms, not 10: it waits in recvmsg() with SO_RCVTIMEO, counted in ticks), and the
exporter and `loopscope ping` use that spacing. Turns, not one window shared by all: a loopback
round trip grows with the idle time before the send, so a concurrent pinger would warm the CPU
for the others. Every pinger writes its figures where nothing reads them per reply (a file; the
exporter keeps them in memory), so no reader is woken by one pinger's replies and not another's.

Like with like, on two axes:
- CPU condition. On this VM the round trip on loopback is mostly the send call, and it is
  shorter when the CPU did not idle before the send. Every turn runs under each of two
  conditions, interleaved: "as_is" (the machine's own idle states) and "no_deep_idle"
  (/dev/cpu_dma_latency held at 0: cpuidle polls instead of halting the vCPU), the same for all.
- Traffic pattern. The exporter's first request of a burst follows the probe's own set-up
  (thread hand-over, socket, connect), so it finds the CPU awake; its other requests follow a
  16 ms wait, as every request of a steady `ping` does. iputils therefore also runs in the
  exporter's pattern ("iputils_bursts": `ping -c 5` from a fresh process, one burst every 5
  spacings), and the exporter is compared with both.
Controls in the as_is condition: `loopscope ping` with its output on a pipe this script reads
per reply (how the bench ran it before), and blackbox_exporter's icmp module
(probe_icmp_duration_seconds{phase="rtt"}) when installed.

With tcpdump installed, a capture on lo is the referee: the kernel stamps each request and reply
as they cross lo (a reply's stamp there is the very receive timestamp the pingers read). Per
pinger and condition: the real request spacing, the capture's request-to-reply time, for
iputils and `loopscope ping` each reply's figure minus the capture's for the same packet (the
time from the pinger's clock read to its request reaching lo: the send call), and for the
bursts the capture's time by position in the burst. bench/icmp_trace.py splits the same round
trips further with kernel trace events (docs/benchmarks.md, "Fourth session").

Run as root (raw ICMP sockets), ideally at nice 19 on a shared machine:
    nice -n 19 python3 bench/exporter.py [--targets 1000] [--seconds 60] [--binary PATH]
"""

import argparse
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build():
    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "loopscope"], cwd=ROOT, check=True
    )
    return os.path.join(ROOT, "target", "release", "loopscope")


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_exporter(binary, config_text, workdir):
    path = os.path.join(workdir, "loopscope.toml")
    with open(path, "w") as f:
        f.write(config_text)
    proc = subprocess.Popen(
        [binary, "exporter", "--config", path, "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stderr.readline()
    match = re.search(r"http://(\S+)", line)
    if not match:
        proc.kill()
        sys.exit(f"the exporter did not start: {line}")
    return proc, match.group(1)


def scrape(address, path="/metrics"):
    with urllib.request.urlopen(f"http://{address}{path}", timeout=30) as response:
        return response.read().decode()


def samples(text, name):
    """{labels: value} for every sample of `name`."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            series, value = line.rsplit(" ", 1)
            labels = series[len(name):]
            out[labels] = float(value)
    return out


def ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)


def status_kib(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def lag_buckets(text):
    buckets = []
    for labels, value in samples(
        text, "loopscope_exporter_scheduling_lag_seconds_bucket"
    ).items():
        le = re.search(r'[{,]le="([^"]+)"', labels).group(1)
        buckets.append((float("inf") if le == "+Inf" else float(le), value))
    return sorted(buckets)


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def cpu_times():
    """(idle, total) jiffies of all CPUs together, from /proc/stat."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    return fields[3] + fields[4], sum(fields)


def idle_percent(before, after):
    """How much of the time between two cpu_times() the CPUs idled: near 0 means the other
    programs kept every CPU busy, and idle-state effects cannot show."""
    return 100.0 * (after[0] - before[0]) / max(1, after[1] - before[1])


def start_cyclictest(seconds):
    """cyclictest at this process's nice level and policy (SCHED_OTHER), one thread waking every
    1 ms for `seconds`, with a histogram in 1 us bins up to 10 s."""
    program = shutil.which("cyclictest")
    if not program:
        return None
    return subprocess.Popen(
        [program, "-q", "-t1", "-i1000", "--policy=other", f"-D{seconds}", "-h10000000"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )


def cyclictest_result(proc):
    """{p99_us, max_us, samples} from cyclictest's histogram (lines `latency count`), or None."""
    if proc is None:
        return None
    out = proc.communicate()[0]
    counts = []
    overflow = 0
    maximum = None
    for line in out.splitlines():
        fields = line.split()
        if line.startswith("# Histogram Overflows"):
            overflow = int(fields[-1])
        elif line.startswith("# Max Latencies"):
            maximum = int(fields[-1])
        elif len(fields) == 2 and fields[0].isdigit():
            counts.append((int(fields[0]), int(fields[1])))
    total = sum(count for _, count in counts) + overflow
    if total == 0:
        return None
    running = 0
    p99 = None
    for latency, count in counts:
        running += count
        if running >= 0.99 * total:
            p99 = latency
            break
    return {"p99_us": p99, "max_us": maximum, "samples": total}


def load_phase(binary, targets, seconds, workdir):
    lines = ["[modules.bench]\nprober = \"icmp\"\npackets = 5\n"
             "spacing = \"10ms\"\ntimeout = \"1s\"\n"]
    for index in range(targets):
        address = f"127.0.{1 + index // 250}.{1 + index % 250}"
        lines.append(
            f"[[targets]]\nname = \"t{index}\"\nmodule = \"bench\"\n"
            f"target = \"{address}\"\ninterval = \"1s\"\n"
        )
    proc, address = start_exporter(binary, "".join(lines), workdir)
    try:
        time.sleep(5)  # every target has had its first probe (phases spread over 1 s)
        first = scrape(address)
        load_before = loadavg()
        cyclic = start_cyclictest(seconds)
        t0, c0 = time.monotonic(), ticks(proc.pid)
        rss_samples = []
        end = t0 + seconds
        while time.monotonic() < end:
            rss_samples.append(status_kib(proc.pid, "VmRSS"))
            time.sleep(1)
        t1, c1 = time.monotonic(), ticks(proc.pid)
        last = scrape(address)
        hwm = status_kib(proc.pid, "VmHWM")
        threads = status_kib(proc.pid, "Threads")
        cyclic = cyclictest_result(cyclic)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    hz = os.sysconf("SC_CLK_TCK")
    cpu = 100.0 * (c1 - c0) / hz / (t1 - t0)
    before, after = dict(lag_buckets(first)), lag_buckets(last)
    window = [(le, count - before.get(le, 0)) for le, count in after]
    total = window[-1][1]
    p99 = next(le for le, count in window if count >= 0.99 * total)
    sent = sum(samples(last, "loopscope_probe_packets_sent_total").values()) - sum(
        samples(first, "loopscope_probe_packets_sent_total").values()
    )
    lost = sum(samples(last, "loopscope_probe_packets_lost_total").values()) - sum(
        samples(first, "loopscope_probe_packets_lost_total").values()
    )
    skipped = samples(last, "loopscope_exporter_probes_skipped_total")
    return {
        "load_average_before": load_before,
        "load_average_after": loadavg(),
        "threads_at_end": threads,
        "cyclictest_same_window": cyclic,
        "targets": targets,
        "window_s": t1 - t0,
        "probes": total,
        "probes_per_s": total / (t1 - t0),
        "packets_sent": sent,
        "packets_lost": lost,
        "skipped": sum(skipped.values()),
        "cpu_percent_of_one_core": cpu,
        "lag_p99_upper_bound_ms": p99 * 1000.0,
        "rss_peak_mib": hwm / 1024.0,
        "rss_max_sampled_mib": max(rss_samples) / 1024.0,
    }


def blackbox(workdir, seconds):
    program = shutil.which("prometheus-blackbox-exporter")
    if not program:
        return None
    config = os.path.join(workdir, "blackbox.yml")
    with open(config, "w") as f:
        f.write("modules:\n  icmp:\n    prober: icmp\n    timeout: 2s\n"
                "    icmp:\n      preferred_ip_protocol: ip4\n")
    port = free_port()
    proc = subprocess.Popen(
        [program, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return proc, f"127.0.0.1:{port}"


def lower_quartile(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 4]


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


# Echo requests and replies to and from 127.0.0.1 (ICMP types 8 and 0).
ECHO_FILTER = ("icmp and host 127.0.0.1 and "
               "(icmp[icmptype] == icmp-echo or icmp[icmptype] == icmp-echoreply)")


def start_capture(workdir):
    """tcpdump on lo writing every echo packet with nanosecond stamps, once it listens; None
    without tcpdump."""
    if not shutil.which("tcpdump"):
        return None
    path = os.path.join(workdir, "rtt.pcap")
    proc = subprocess.Popen(
        ["tcpdump", "-Z", "root", "-U", "-nn", "-i", "lo", "--time-stamp-precision=nano",
         "-w", path, ECHO_FILTER],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    for line in proc.stderr:
        if "listening on" in line:
            return proc, path
    proc.wait()
    return None


def stop_capture(capture):
    """Stops tcpdump and reads its file: (ns, type, identifier, sequence, payload head) per echo
    packet, in capture order."""
    proc, path = capture
    time.sleep(0.5)  # -U writes each packet as it comes; leave the last ones time to land
    proc.send_signal(signal.SIGINT)
    proc.communicate()
    data = open(path, "rb").read()
    magic = struct.unpack("<I", data[:4])[0]
    if magic != 0xA1B23C4D:
        raise SystemExit(f"{path}: not a little-endian nanosecond pcap (magic {magic:#x})")
    packets, offset = [], 24
    while offset + 16 <= len(data):
        seconds, nanos, length, _ = struct.unpack("<IIII", data[offset:offset + 16])
        frame = data[offset + 16:offset + 16 + length]
        offset += 16 + length
        ip = frame[14:]  # lo is Ethernet-framed (DLT_EN10MB)
        icmp = ip[(ip[0] & 0xF) * 4:]
        if len(icmp) < 8:
            continue
        identifier, sequence = struct.unpack("!HH", icmp[4:8])
        packets.append((seconds * 10**9 + nanos, icmp[0], identifier, sequence, bytes(icmp[8:28])))
    return packets


def exchanges(packets):
    """Every echo request that has its reply in the capture: (request_ns, reply_ns, identifier,
    sequence, payload head), in request order."""
    pending, out = {}, []
    for at, kind, identifier, sequence, head in packets:
        key = (identifier, sequence)
        if kind == 8:
            pending[key] = (at, head)
        elif kind == 0 and key in pending:
            request, head = pending.pop(key)
            out.append((request, at, identifier, sequence, head))
    return sorted(out)


def sent_by(tool, head):
    """Whether a request's payload is of this tool's kind: ours start with the stamp "LSCP";
    iputils' carries a timeval, then the bytes 0x10, 0x11, ... (ping's fill pattern)."""
    if tool in ("exporter", "cli", "cli_piped"):
        return head.startswith(b"LSCP")
    if tool in ("iputils", "iputils_bursts"):
        return not head.startswith(b"LSCP") and head[16:20] == bytes([16, 17, 18, 19])
    return not head.startswith(b"LSCP")


# Conditions of the CPUs the pingers take turns under. On this VM the round trip on loopback
# grows with how long the CPU idled before the send (the vCPU halts, the host runs something
# else, caches go cold): "as_is" is the machine's own behaviour; "no_deep_idle" holds
# /dev/cpu_dma_latency at 0 (the PM QoS interface: cpuidle then only polls, the vCPU never
# halts), the same for every pinger, so that what is left between them is their own code.
CONDITIONS = ("as_is", "no_deep_idle")


class CpuCondition:
    """Holds /dev/cpu_dma_latency at 0 while entered for "no_deep_idle"; nothing for "as_is"."""

    def __init__(self, name):
        self.name, self.file = name, None

    def __enter__(self):
        if self.name == "no_deep_idle":
            self.file = open("/dev/cpu_dma_latency", "wb", buffering=0)
            self.file.write(struct.pack("i", 0))
        return self

    def __exit__(self, *_):
        if self.file:
            self.file.close()


def iputils_spacing_us(workdir):
    """How far apart iputils `ping -i 0.01` sends when nothing delays it, in whole
    microseconds: the lower quartile of the time between 41 requests, from a capture of them on
    lo (the kernel's stamps) when tcpdump is there, else from the reply times ping prints with
    -D. Not the median: iputils waits in ticks (16.0 ms on this 250 Hz kernel), and on a loaded
    machine a late wake-up makes a gap a tick longer; it never makes one shorter. Medians read
    17.6, 17.7 and 20.0 ms in three loaded runs where iputils' turns then went every 16.0 ms."""
    capture = start_capture(workdir)
    out = subprocess.run(["ping", "-D", "-n", "-c", "41", "-i", "0.01", "127.0.0.1"],
                         capture_output=True, text=True).stdout
    if capture:
        ours = [(at, identifier) for at, kind, identifier, _, head in stop_capture(capture)
                if kind == 8 and sent_by("iputils", head)]
        # This ping's identifier: the most frequent (another program may ping lo meanwhile).
        identifiers = [identifier for _, identifier in ours]
        mine = max(set(identifiers), key=identifiers.count) if identifiers else None
        requests = [at for at, identifier in ours if identifier == mine]
        if len(requests) >= 2:
            return round(lower_quartile([b - a for a, b in zip(requests, requests[1:])]) / 1000)
    times = [float(t) for t in re.findall(r"^\[(\d+\.\d+)\]", out, re.MULTILINE)]
    if len(times) < 2:
        raise SystemExit(f"iputils ping printed no replies: {out}")
    return round(lower_quartile([b - a for a, b in zip(times, times[1:])]) * 1e6)


def histogram_window(before, after, name):
    """The cumulative buckets [(le, count)] of a histogram's observations between two scrapes."""
    def buckets(page):
        out = {}
        for labels, value in samples(page, name + "_bucket").items():
            le = re.search(r'[{,]le="([^"]+)"', labels).group(1)
            out[float("inf") if le == "+Inf" else float(le)] = value
        return out
    earlier = buckets(before)
    return sorted((le, count - earlier.get(le, 0)) for le, count in buckets(after).items())


def pooled_median(windows):
    """The median of the observations of several histogram windows (same buckets), interpolated
    linearly inside the bucket that holds it."""
    pooled = {}
    for window in windows:
        for le, count in window:
            pooled[le] = pooled.get(le, 0) + count
    cumulative = sorted(pooled.items())
    total = cumulative[-1][1] if cumulative else 0
    if total == 0:
        return None
    lower, below = 0.0, 0.0
    for le, count in cumulative:
        if count >= total / 2:
            if le == float("inf") or count == below:
                return lower
            return lower + (le - lower) * (total / 2 - below) / (count - below)
        lower, below = le, count
    return None


def as_histogram(values_s, bounds_s):
    """Exact samples as the exporter's cumulative buckets would hold them."""
    ordered = sorted(values_s)
    out, index = [], 0
    for le in bounds_s:
        while index < len(ordered) and ordered[index] <= le:
            index += 1
        out.append((le, index))
    out.append((float("inf"), len(ordered)))
    return out


def run_turn(tool, binary, config, spacing_us, turn, workdir, bb):
    """One pinger alone for `turn` seconds. Returns {window_ns, rtts_us (per sequence, or None
    for the exporter), histogram, sum_s, count}."""
    began = time.time_ns()
    result = {"tool": tool}
    if tool == "exporter":
        proc, address = start_exporter(binary, config, workdir)
        try:
            first = scrape(address)
            time.sleep(turn)
            last = scrape(address)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
        result["histogram"] = histogram_window(first, last, "loopscope_probe_rtt_seconds")
        for name in ("_sum", "_count"):
            after = samples(last, "loopscope_probe_rtt_seconds" + name)
            before = samples(first, "loopscope_probe_rtt_seconds" + name)
            key = next(iter(after))
            result[name[1:]] = after[key] - before.get(key, 0)
    elif tool == "iputils":
        # Into a file, as the exporter's figures are kept in memory: no reader wakes per reply.
        path = os.path.join(workdir, "iputils.out")
        with open(path, "w") as out:
            subprocess.run(["ping", "-n", "-i", "0.01", "-w", str(turn), "127.0.0.1"], stdout=out,
                           stderr=subprocess.DEVNULL)
        result["rtts_us"] = {int(seq): float(ms) * 1000.0 for seq, ms in
                             re.findall(r"icmp_seq=(\d+) .*time=([\d.]+) ms", open(path).read())}
    elif tool == "iputils_bursts":
        # The exporter's pattern with iputils: a burst of 5 requests at the spacing from a
        # fresh process (socket set up just before the first request, as the exporter opens one
        # per probe), one burst every 5 spacings.
        path = os.path.join(workdir, "bursts.out")
        figures, period, end = [], 5 * spacing_us / 1e6, time.monotonic() + turn
        with open(path, "w") as out:
            due = time.monotonic()
            while due < end:
                time.sleep(max(0.0, due - time.monotonic()))
                subprocess.run(["ping", "-n", "-c", "5", "-i", "0.01", "-W", "1", "127.0.0.1"],
                               stdout=out, stderr=subprocess.DEVNULL)
                due += period
                if due < time.monotonic():
                    due = time.monotonic()
        figures = [(int(seq), float(ms) * 1000.0) for seq, ms in
                   re.findall(r"icmp_seq=(\d+) .*time=([\d.]+) ms", open(path).read())]
        result["rtts_by_position_us"] = figures
    elif tool in ("cli", "cli_piped"):
        command = [binary, "ping", "icmp://127.0.0.1", "-i", f"{spacing_us}us", "-w", f"{turn}s",
                   "--json"]
        if tool == "cli":
            path = os.path.join(workdir, "cli.out")
            with open(path, "w") as out:
                subprocess.run(command, stdout=out, stderr=subprocess.DEVNULL)
            text = open(path).read()
        else:
            # As the bench ran it before: each reply line wakes this script, reading the pipe.
            text = subprocess.run(command, capture_output=True, text=True).stdout
        result["rtts_us"] = {reply["seq"]: reply["rtt_us"] for reply in
                             map(json.loads, text.splitlines())
                             if reply["type"] == "reply" and not reply.get("duplicate")}
    else:
        rtts = []
        end = time.monotonic() + turn
        while time.monotonic() < end:
            try:
                text = scrape(bb[1], "/probe?module=icmp&target=127.0.0.1")
                value = samples(text, "probe_icmp_duration_seconds").get('{phase="rtt"}')
                if value is not None and samples(text, "probe_success").get("") == 1.0:
                    rtts.append(value * 1e6)
            except OSError:
                pass
            time.sleep(0.2)
        result["rtts_list_us"] = rtts
    result["window_ns"] = (began, time.time_ns())
    return result


def summarise(turns, packets, bounds_s):
    """Per tool (of one condition): its figures, the capture's, and each figure against it."""
    by_tool = {}
    for turn in turns:
        by_tool.setdefault(turn["tool"], []).append(turn)
    captured = exchanges(packets) if packets is not None else None
    out = {}
    for tool, runs in by_tool.items():
        entry = {"turns": len(runs)}
        if tool == "exporter":
            count = sum(run["count"] for run in runs)
            entry["median_us"] = pooled_median([run["histogram"] for run in runs]) * 1e6
            entry["mean_us"] = sum(run["sum"] for run in runs) / count * 1e6
            entry["replies"] = count
            entry["turn_medians_us"] = [round(pooled_median([run["histogram"]]) * 1e6, 1)
                                        for run in runs]
        elif tool == "iputils_bursts":
            pairs = [pair for run in runs for pair in run["rtts_by_position_us"]]
            values = [value for _, value in pairs]
            if values:
                entry.update(median_us=median(values), mean_us=sum(values) / len(values),
                             replies=len(values))
                entry["median_by_position_us"] = {
                    position: round(median([v for p, v in pairs if p == position]), 1)
                    for position in sorted({p for p, _ in pairs})}
        elif tool == "blackbox":
            values = [v for run in runs for v in run["rtts_list_us"]]
            if values:
                entry.update(median_us=median(values), mean_us=sum(values) / len(values),
                             replies=len(values))
        else:
            values = [v for run in runs for v in run["rtts_us"].values()]
            entry.update(median_us=median(values), mean_us=sum(values) / len(values),
                         replies=len(values),
                         turn_medians_us=[round(median(list(run["rtts_us"].values())), 1)
                                          for run in runs if run["rtts_us"]])
            if tool == "cli":
                # What the exporter's 1 us buckets do to a median: these exact samples, bucketed.
                bucketed = pooled_median([as_histogram([v / 1e6 for v in values], bounds_s)])
                entry["bucketed_median_us"] = bucketed * 1e6
        if captured is not None:
            wire, beyond, gaps, by_position = [], [], [], {}
            for run in runs:
                first, last = run["window_ns"]
                mine = [x for x in captured if first <= x[0] <= last and sent_by(tool, x[4])]
                if tool in ("cli", "cli_piped", "iputils"):
                    # One socket per turn: its identifier is the most frequent one (other
                    # programs on a shared machine may ping lo in the same window).
                    identifiers = [x[2] for x in mine]
                    if identifiers:
                        own = max(set(identifiers), key=identifiers.count)
                        mine = [x for x in mine if x[2] == own]
                wire += [(reply - request) / 1000 for request, reply, *_ in mine]
                gaps += [(b[0] - a[0]) / 1e6 for a, b in zip(mine, mine[1:])]
                figures = run.get("rtts_us")
                if figures:
                    # Sequence numbers on the wire are 16 bits.
                    figures = {seq % 65536: value for seq, value in figures.items()}
                    beyond += [figures[seq] - (reply - request) / 1000
                               for request, reply, _, seq, _ in mine if seq in figures]
                if tool in ("exporter", "iputils_bursts"):
                    for request, reply, _, seq, _ in mine:
                        by_position.setdefault(seq, []).append((reply - request) / 1000)
            if wire:
                entry.update(wire_median_us=median(wire), wire_mean_us=sum(wire) / len(wire),
                             exchanges=len(wire),
                             spacing_median_ms=median(gaps) if gaps else None)
                entry["above_wire_median_us"] = entry.get("median_us", 0) - median(wire)
            if beyond:
                entry["figure_minus_wire_median_us"] = median(beyond)
                entry["figure_minus_wire_min_us"] = min(beyond)
            if by_position:
                entry["wire_median_by_position_us"] = {
                    position: round(median(values), 1)
                    for position, values in sorted(by_position.items()) if position <= 5}
        out[tool] = entry
    for tool in ("exporter", "cli", "cli_piped", "blackbox"):
        if tool in out and "iputils" in out and "median_us" in out[tool]:
            out[tool]["ratio_to_iputils_median"] = out[tool]["median_us"] / out["iputils"]["median_us"]
            out[tool]["ratio_to_iputils_mean"] = out[tool]["mean_us"] / out["iputils"]["mean_us"]
    # The exporter against iputils sending in the exporter's own pattern.
    if "median_us" in out.get("exporter", {}) and "median_us" in out.get("iputils_bursts", {}):
        out["exporter"]["ratio_to_iputils_bursts_median"] = (
            out["exporter"]["median_us"] / out["iputils_bursts"]["median_us"])
        out["exporter"]["ratio_to_iputils_bursts_mean"] = (
            out["exporter"]["mean_us"] / out["iputils_bursts"]["mean_us"])
    return out


def rtt_phase(binary, seconds, workdir, rounds=4, conditions=CONDITIONS):
    """The pingers take turns alone on the machine, each under each CPU condition, in a rotating
    order, `rounds` times: `seconds` in all per pinger and condition. In the "as_is" condition
    `loopscope ping` also takes a turn with its output on a pipe this script reads (as the bench
    used to run it: a reader woken per reply), and blackbox_exporter takes one."""
    bounds_us = list(range(1, 1001))
    buckets = ", ".join(f"{us}e-6" for us in bounds_us)
    spacing_us = iputils_spacing_us(workdir)
    config = (
        "[modules.burst]\nprober = \"icmp\"\npackets = 5\n"
        f"spacing = \"{spacing_us}us\"\n"
        f"timeout = \"1s\"\nrtt_buckets = [{buckets}]\n"
        "[[targets]]\nname = \"lo\"\nmodule = \"burst\"\n"
        f"target = \"127.0.0.1\"\ninterval = \"{5 * spacing_us}us\"\n"
    )
    turn = max(2, round(seconds / rounds))  # under 2 s the exporter's start weighs too much
    if "no_deep_idle" in conditions and not os.path.exists("/dev/cpu_dma_latency"):
        print("(no /dev/cpu_dma_latency: the no_deep_idle condition is left out)")
        conditions = tuple(c for c in conditions if c != "no_deep_idle")
    bb = blackbox(workdir, seconds)
    plan = []
    for round_index in range(rounds):
        order = list(conditions[round_index % len(conditions):]) + \
            list(conditions[:round_index % len(conditions)])
        for condition in order:
            tools = ["exporter", "iputils", "cli"]
            if condition == "as_is":
                tools += ["iputils_bursts", "cli_piped"]
                if bb:
                    tools.append("blackbox")
            shift = round_index % len(tools)
            plan += [(condition, tool) for tool in tools[shift:] + tools[:shift]]
    turns = {condition: [] for condition in conditions}
    load_before = loadavg()
    times_before = cpu_times()
    capture = start_capture(workdir)
    packets = None
    try:
        for condition, tool in plan:
            with CpuCondition(condition):
                turns[condition].append(
                    run_turn(tool, binary, config, spacing_us, turn, workdir, bb))
    finally:
        if capture:
            packets = stop_capture(capture)
        if bb:
            bb[0].terminate()
            bb[0].wait()
    result = {
        "spacing_us": spacing_us,
        "rounds": rounds,
        "turn_s": turn,
        "load_average_before": load_before,
        "load_average_after": loadavg(),
        "cpu_idle_percent": idle_percent(times_before, cpu_times()),
        "captured": packets is not None,
        "conditions": {condition: summarise(turns[condition], packets,
                                            [us / 1e6 for us in bounds_us])
                       for condition in conditions},
    }
    return result


def print_rtt(rtt):
    print(
        f"ICMP RTT on 127.0.0.1: every pinger sends every {rtt['spacing_us'] / 1000:.1f} ms "
        f"(iputils' real spacing at -i 0.01), turns of {rtt['turn_s']} s alone on the machine, "
        f"{rtt['rounds']} rounds (load average {rtt['load_average_before']} -> "
        f"{rtt['load_average_after']}; the CPUs idled {rtt['cpu_idle_percent']:.0f} % of the "
        f"time, this script's pingers and capture included)"
    )
    names = {"exporter": "exporter", "cli": "loopscope ping", "iputils": "iputils ping",
             "iputils_bursts": "iputils ping in the exporter's bursts (ping -c 5 every 5 spacings)",
             "cli_piped": "loopscope ping, output on a pipe read per reply",
             "blackbox": "blackbox_exporter"}
    for condition, tools in rtt["conditions"].items():
        print(f" {condition}:")
        for tool, name in names.items():
            entry = tools.get(tool)
            if not entry or "median_us" not in entry:
                continue
            text = f"  {name}: median / mean {entry['median_us']:.1f} / {entry['mean_us']:.1f} us"
            if "ratio_to_iputils_median" in entry:
                text += (f" (to iputils {entry['ratio_to_iputils_median']:.3f} / "
                         f"{entry['ratio_to_iputils_mean']:.3f})")
            if "ratio_to_iputils_bursts_median" in entry:
                text += (f" (to iputils in bursts {entry['ratio_to_iputils_bursts_median']:.3f} / "
                         f"{entry['ratio_to_iputils_bursts_mean']:.3f})")
            if "median_by_position_us" in entry:
                text += f"; by position in the burst {entry['median_by_position_us']}"
            if "wire_median_us" in entry:
                text += (f"; on the wire {entry['wire_median_us']:.1f} / "
                         f"{entry['wire_mean_us']:.1f} us, requests every "
                         f"{entry['spacing_median_ms']:.1f} ms")
            if "figure_minus_wire_median_us" in entry:
                text += (f"; figure minus wire per packet median "
                         f"{entry['figure_minus_wire_median_us']:+.1f} us, least "
                         f"{entry['figure_minus_wire_min_us']:+.1f} us")
            elif "above_wire_median_us" in entry and tool == "exporter":
                text += f"; median minus wire median {entry['above_wire_median_us']:+.1f} us"
            if "wire_median_by_position_us" in entry:
                text += f"; wire by position in the burst {entry['wire_median_by_position_us']}"
            if "bucketed_median_us" in entry:
                text += f"; its samples in the exporter's 1 us buckets: median {entry['bucketed_median_us']:.1f} us"
            if "turn_medians_us" in entry:
                text += f"; per turn {entry['turn_medians_us']}"
            print(text)
    if not rtt["captured"]:
        print("(no packet capture: install tcpdump to hold the pingers against the wire)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rtt-seconds", type=int, default=12,
                        help="per pinger and CPU condition, in all rounds together")
    parser.add_argument("--rtt-rounds", type=int, default=6,
                        help="rounds of turns (more, shorter turns spread a swinging load "
                             "more evenly over the pingers)")
    parser.add_argument("--binary", help="a loopscope binary to run (default: build release)")
    parser.add_argument("--skip-load", action="store_true", help="phase 2 only")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the ICMP probes use raw sockets")
    binary = args.binary or build()
    with tempfile.TemporaryDirectory() as workdir:
        load = None if args.skip_load else load_phase(binary, args.targets, args.seconds, workdir)
        if load:
            print("load:", load)
        rtt = rtt_phase(binary, args.rtt_seconds, workdir, rounds=args.rtt_rounds)
        print("rtt:", rtt)
    if load:
        cyclic = load["cyclictest_same_window"]
        floor = (
            f"cyclictest in the same window: p99 {cyclic['p99_us'] / 1000:.3g} ms, "
            f"max {cyclic['max_us'] / 1000:.3g} ms"
            if cyclic else "cyclictest not installed (apt-get install rt-tests)"
        )
        print(
            f"\n{load['targets']} targets x 5 packets every 1 s over {load['window_s']:.0f} s "
            f"(load average {load['load_average_before']} -> {load['load_average_after']}): "
            f"{load['probes_per_s']:.0f} probes/s, CPU {load['cpu_percent_of_one_core']:.1f} % "
            f"of one core (goal <= 25), scheduling lag p99 <= "
            f"{load['lag_p99_upper_bound_ms']:.3g} ms (goal <= 2; {floor}), RSS peak "
            f"{load['rss_peak_mib']:.1f} MiB (goal <= 64), {load['threads_at_end']} threads, "
            f"{load['packets_lost']:.0f} of {load['packets_sent']:.0f} packets lost, "
            f"{load['skipped']:.0f} probes skipped"
        )
    print_rtt(rtt)


if __name__ == "__main__":
    main()
