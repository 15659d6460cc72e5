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

Phase 2 (RTT): iputils `ping -i 0.01 127.0.0.1`, one exporter target on 127.0.0.1 (RTT
histogram in 1 us buckets up to 1 ms) and `loopscope ping icmp://127.0.0.1` take turns, each
alone on the machine for its turn, in a rotating order, 4 rounds (`--rtt-seconds` in all per
pinger). All three send equally often: a short iputils run first measures how far apart its
requests really go (on a 250 Hz kernel 16 ms, not 10: it waits in recvmsg() with SO_RCVTIMEO,
counted in ticks), and the exporter (bursts of 5 at that spacing, one burst every 5 spacings: an
even stream) and `loopscope ping` use that interval. Turns, not one window shared by all:
a loopback round trip grows with the idle time before the send, so a concurrent pinger would
warm the CPU for the others and make the figures depend on their phases. The median and the mean
RTT of each (the exporter's median interpolated in its 1 us buckets). With
prometheus-blackbox-exporter installed, its icmp module takes a turn too
(probe_icmp_duration_seconds{phase="rtt"}).

With tcpdump installed, phase 2 also captures every echo request and reply on lo: the kernel's
stamps of each request and reply as they cross lo are the reference (a reply's stamp there is
the very receive timestamp the pingers read). Per pinger it prints how far apart its requests
really went, the capture's request-to-reply time (median / mean), and for iputils and
`loopscope ping` each reply's figure minus the capture's (the time from the pinger's clock read
to its request reaching lo: the send call). The exporter's packets are told apart by their
payload ("LSCP") and their identifier (one socket per probe, 5 requests each; the command's one
socket sends them all). On loopback the send call is most of a round trip and it grows with how
long the CPU idled before the send, so pingers with different real spacings read differently for
that reason alone (docs/benchmarks.md, "ICMP round trip against a packet capture").

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


def wire_breakdown(packets, ping_runs, cli_runs):
    """Per pinger: its real request spacing and the capture's request-to-reply times; for iputils
    and `loopscope ping`, each reply's figure minus the capture's for the same packet.
    `ping_runs` and `cli_runs` are the runs' {sequence: rtt_us}, in the order they ran."""
    requests, exchanges = {}, {}
    for at, kind, identifier, sequence, head in packets:
        key = (identifier, sequence)
        if kind == 8:
            requests[key] = (at, head)
        elif kind == 0 and key in requests and key not in exchanges:
            exchanges[key] = (requests[key][0], at, requests[key][1])
    by_identifier = {}
    for (identifier, sequence), exchange in exchanges.items():
        by_identifier.setdefault(identifier, {})[sequence] = exchange

    def payload(run):
        return next(iter(run.values()))[2]

    def in_order(runs):
        return sorted(runs, key=lambda run: min(request for request, _, _ in run.values()))

    ours = [run for run in by_identifier.values() if payload(run).startswith(b"LSCP")]
    # iputils: a timeval, then the bytes 0x10, 0x11, ... (ping's fill pattern).
    theirs = in_order([run for run in by_identifier.values()
                       if not payload(run).startswith(b"LSCP")
                       and payload(run)[16:20] == bytes([16, 17, 18, 19])])
    # An exporter probe is one socket with 5 requests; a `loopscope ping` run sends hundreds.
    cli = in_order([run for run in ours if len(run) > 5])
    probes = in_order([run for run in ours if len(run) <= 5])
    result = {}

    def describe(name, runs, tool_runs=None):
        wire = [(reply - request) / 1000 for run in runs for request, reply, _ in run.values()]
        if not wire:
            return
        gaps = []
        for run in runs:
            times = sorted(request for request, _, _ in run.values())
            gaps += [(b - a) / 1e6 for a, b in zip(times, times[1:])]
        entry = {"wire_median_us": median(wire), "wire_mean_us": sum(wire) / len(wire),
                 "spacing_median_ms": median(gaps) if gaps else None, "exchanges": len(wire)}
        if tool_runs is not None and len(tool_runs) == len(runs):
            # Sequence numbers on the wire are 16 bits.
            beyond = [tool[seq] - (reply - request) / 1000
                      for run, tool in zip(runs, [{s % 65536: v for s, v in t.items()}
                                                  for t in tool_runs])
                      for seq, (request, reply, _) in run.items() if seq in tool]
            if beyond:
                entry["tool_minus_wire_median_us"] = median(beyond)
                entry["tool_minus_wire_min_us"] = min(beyond)
        result[name] = entry

    describe("iputils", theirs, ping_runs)
    describe("loopscope_ping", cli, cli_runs)
    describe("exporter", probes)
    if probes and "exporter" in result:
        starts = [min(request for request, _, _ in run.values()) for run in probes]
        ends = [max(request for request, _, _ in run.values()) for run in probes]
        quiet = [(b - a) / 1e6 for a, b in zip(ends, starts[1:]) if 0 < b - a < 10**9]
        first_wire = [(run[min(run)][1] - run[min(run)][0]) / 1000 for run in probes]
        result["exporter"]["quiet_before_a_burst_median_ms"] = median(quiet) if quiet else None
        result["exporter"]["wire_first_of_burst_median_us"] = median(first_wire)
    return result


def iputils_spacing_us():
    """How far apart iputils `ping -i 0.01` really sends, in whole microseconds: the median
    time between the replies of 21 requests, from the times it prints with -D."""
    out = subprocess.run(["ping", "-D", "-n", "-c", "21", "-i", "0.01", "127.0.0.1"],
                         capture_output=True, text=True).stdout
    times = [float(t) for t in re.findall(r"^\[(\d+\.\d+)\]", out, re.MULTILINE)]
    if len(times) < 2:
        raise SystemExit(f"iputils ping printed no replies: {out}")
    return round(median([b - a for a, b in zip(times, times[1:])]) * 1e6)


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
    total = cumulative[-1][1]
    lower, below = 0.0, 0.0
    for le, count in cumulative:
        if count >= total / 2:
            if le == float("inf") or count == below:
                return lower
            return lower + (le - lower) * (total / 2 - below) / (count - below)
        lower, below = le, count
    return None


def rtt_phase(binary, seconds, workdir, rounds=4):
    """Alternating turns, each pinger alone on the machine for its turn (a concurrent pinger
    would warm the CPU for the others and make the comparison depend on their phases), in a
    rotating order, `rounds` times; `seconds` in all per pinger."""
    buckets = ", ".join(f"{us}e-6" for us in range(1, 1001))
    spacing_us = iputils_spacing_us()
    config = (
        "[modules.burst]\nprober = \"icmp\"\npackets = 5\n"
        f"spacing = \"{spacing_us}us\"\n"
        f"timeout = \"1s\"\nrtt_buckets = [{buckets}]\n"
        "[[targets]]\nname = \"lo\"\nmodule = \"burst\"\n"
        f"target = \"127.0.0.1\"\ninterval = \"{5 * spacing_us}us\"\n"
    )
    turn = max(2, round(seconds / rounds))
    tools = ["exporter", "iputils", "cli"]
    bb = blackbox(workdir, seconds)
    if bb:
        tools.append("blackbox")
    ping_runs, cli_runs, windows, bb_rtts = [], [], [], []
    exporter_sum = exporter_count = 0.0
    load_before = loadavg()
    capture = start_capture(workdir)
    packets = None
    try:
        for round_index in range(rounds):
            for tool in tools[round_index % len(tools):] + tools[:round_index % len(tools)]:
                if tool == "exporter":
                    proc, address = start_exporter(binary, config, workdir)
                    try:
                        first = scrape(address)
                        time.sleep(turn)
                        last = scrape(address)
                    finally:
                        proc.send_signal(signal.SIGTERM)
                        proc.wait()
                    windows.append(histogram_window(first, last, "loopscope_probe_rtt_seconds"))
                    for name, into in (("_sum", 0), ("_count", 1)):
                        after = samples(last, "loopscope_probe_rtt_seconds" + name)
                        before = samples(first, "loopscope_probe_rtt_seconds" + name)
                        key = next(iter(after))
                        delta = after[key] - before.get(key, 0)
                        if into == 0:
                            exporter_sum += delta
                        else:
                            exporter_count += delta
                elif tool == "iputils":
                    out = subprocess.run(["ping", "-n", "-i", "0.01", "-w", str(turn), "127.0.0.1"],
                                         capture_output=True, text=True).stdout
                    ping_runs.append({int(seq): float(ms) * 1000.0 for seq, ms in
                                      re.findall(r"icmp_seq=(\d+) .*time=([\d.]+) ms", out)})
                elif tool == "cli":
                    out = subprocess.run(
                        [binary, "ping", "icmp://127.0.0.1", "-i", f"{spacing_us}us",
                         "-w", f"{turn}s", "--json"],
                        capture_output=True, text=True).stdout
                    cli_runs.append({reply["seq"]: reply["rtt_us"] for reply in
                                     map(json.loads, out.splitlines())
                                     if reply["type"] == "reply" and not reply.get("duplicate")})
                else:
                    end = time.monotonic() + turn
                    while time.monotonic() < end:
                        try:
                            text = scrape(bb[1], "/probe?module=icmp&target=127.0.0.1")
                            value = samples(text, "probe_icmp_duration_seconds").get('{phase="rtt"}')
                            if value is not None and samples(text, "probe_success").get("") == 1.0:
                                bb_rtts.append(value)
                        except OSError:
                            pass
                        time.sleep(0.2)
    finally:
        if capture:
            packets = stop_capture(capture)
        if bb:
            bb[0].terminate()
            bb[0].wait()
    ping_rtts = [rtt for run in ping_runs for rtt in run.values()]
    cli_rtts = [rtt for run in cli_runs for rtt in run.values()]
    ours_median_us = pooled_median(windows) * 1e6
    ours_mean_us = exporter_sum / exporter_count * 1e6
    ping_median = median(ping_rtts)
    ping_mean = sum(ping_rtts) / len(ping_rtts)
    result = {
        "spacing_us": spacing_us,
        "rounds": rounds,
        "turn_s": turn,
        "load_average_before": load_before,
        "load_average_after": loadavg(),
        "ours_exporter_median_us": ours_median_us,
        "ours_exporter_mean_us": ours_mean_us,
        "ours_exporter_replies": exporter_count,
        "ours_cli_median_us": median(cli_rtts),
        "ours_cli_mean_us": sum(cli_rtts) / len(cli_rtts),
        "ours_cli_replies": len(cli_rtts),
        "ping_median_us": ping_median,
        "ping_mean_us": ping_mean,
        "ping_min_us": min(ping_rtts),
        "ping_replies": len(ping_rtts),
        "ratio_exporter_to_ping_median": ours_median_us / ping_median,
        "ratio_exporter_to_ping_mean": ours_mean_us / ping_mean,
        "ratio_cli_to_ping_median": median(cli_rtts) / ping_median,
        "ratio_cli_to_ping_mean": sum(cli_rtts) / len(cli_rtts) / ping_mean,
    }
    if packets is not None:
        result["capture"] = wire_breakdown(packets, ping_runs, cli_runs)
    if bb_rtts:
        result["blackbox_median_us"] = median(bb_rtts) * 1e6
        result["blackbox_mean_us"] = sum(bb_rtts) / len(bb_rtts) * 1e6
        result["blackbox_probes"] = len(bb_rtts)
        result["ratio_blackbox_to_ping_median"] = result["blackbox_median_us"] / ping_median
        result["ratio_blackbox_to_ping_mean"] = result["blackbox_mean_us"] / ping_mean
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rtt-seconds", type=int, default=30)
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
        rtt = rtt_phase(binary, args.rtt_seconds, workdir)
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
    line = (
        f"ICMP RTT on 127.0.0.1, {rtt['rounds']} rounds of {rtt['turn_s']} s turns, every pinger "
        f"sending every {rtt['spacing_us'] / 1000:.1f} ms (iputils' real spacing at -i 0.01) "
        f"(load average {rtt['load_average_before']} -> "
        f"{rtt['load_average_after']}), median / mean: exporter "
        f"{rtt['ours_exporter_median_us']:.1f} / {rtt['ours_exporter_mean_us']:.1f} us, "
        f"loopscope ping {rtt['ours_cli_median_us']:.1f} / {rtt['ours_cli_mean_us']:.1f} us, "
        f"iputils ping {rtt['ping_median_us']:.1f} / {rtt['ping_mean_us']:.1f} us; "
        f"exporter/ping {rtt['ratio_exporter_to_ping_median']:.3f} / "
        f"{rtt['ratio_exporter_to_ping_mean']:.3f}, loopscope ping/ping "
        f"{rtt['ratio_cli_to_ping_median']:.3f} / {rtt['ratio_cli_to_ping_mean']:.3f}"
    )
    if "blackbox_mean_us" in rtt:
        line += (
            f"; blackbox_exporter {rtt['blackbox_median_us']:.1f} / "
            f"{rtt['blackbox_mean_us']:.1f} us (blackbox/ping "
            f"{rtt['ratio_blackbox_to_ping_median']:.3f} / "
            f"{rtt['ratio_blackbox_to_ping_mean']:.3f})"
        )
    print(line)
    capture = rtt.get("capture")
    if capture:
        names = {"iputils": "iputils ping", "loopscope_ping": "loopscope ping",
                 "exporter": "exporter"}
        print("Against the capture on lo (the kernel's stamps as request and reply cross it):")
        for key, name in names.items():
            entry = capture.get(key)
            if not entry:
                continue
            text = (f"  {name}: {entry['exchanges']} exchanges, requests every "
                    f"{entry['spacing_median_ms']:.1f} ms")
            if "quiet_before_a_burst_median_ms" in entry:
                text += (f" within a burst, {entry['quiet_before_a_burst_median_ms']:.0f} ms "
                         f"quiet before one")
            text += (f"; on the wire median / mean {entry['wire_median_us']:.1f} / "
                     f"{entry['wire_mean_us']:.1f} us")
            if "wire_first_of_burst_median_us" in entry:
                text += (f" (first request of a burst "
                         f"{entry['wire_first_of_burst_median_us']:.1f} us)")
            if "tool_minus_wire_median_us" in entry:
                text += (f"; its figure minus the capture's, median {entry['tool_minus_wire_median_us']:+.1f}"
                         f" us, least {entry['tool_minus_wire_min_us']:+.1f} us")
            print(text)
    elif capture is None:
        print("(no packet capture: install tcpdump to hold the pingers against the wire)")


if __name__ == "__main__":
    main()
