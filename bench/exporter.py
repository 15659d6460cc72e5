#!/usr/bin/env python3
"""loopscope exporter under load, and its ICMP RTT beside iputils ping (and blackbox_exporter).

Phase 1 (load): one exporter probes N targets (default 1,000; the addresses 127.0.x.y, all on
lo) every second with 5 ICMP echo requests each. Over the measured window it reports the
exporter's CPU (user + system from /proc/PID/stat, in % of one core), its scheduling lag p99
(from its own histogram, the difference of two scrapes: the upper bound of the bucket that
holds the 99th percentile), and its RSS (VmHWM, the peak).

Phase 2 (RTT): one exporter target on 127.0.0.1 (5 packets 10 ms apart every 200 ms) while
iputils `ping -i 0.01 127.0.0.1` runs in the same window; the mean RTT of each. With
prometheus-blackbox-exporter installed, its icmp module is asked for 127.0.0.1 in the same
window too (probe_icmp_duration_seconds{phase="rtt"}).

Run as root (raw ICMP sockets), ideally at nice 19 on a shared machine:
    nice -n 19 python3 bench/exporter.py [--targets 1000] [--seconds 60]
"""

import argparse
import os
import re
import shutil
import signal
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
        le = re.search(r'le="([^"]+)"', labels).group(1)
        buckets.append((float("inf") if le == "+Inf" else float(le), value))
    return sorted(buckets)


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
        t0, c0 = time.monotonic(), ticks(proc.pid)
        rss_samples = []
        end = t0 + seconds
        while time.monotonic() < end:
            rss_samples.append(status_kib(proc.pid, "VmRSS"))
            time.sleep(1)
        t1, c1 = time.monotonic(), ticks(proc.pid)
        last = scrape(address)
        hwm = status_kib(proc.pid, "VmHWM")
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


def rtt_phase(binary, seconds, workdir):
    config = (
        "[modules.burst]\nprober = \"icmp\"\npackets = 5\nspacing = \"10ms\"\n"
        "timeout = \"1s\"\n[[targets]]\nname = \"lo\"\nmodule = \"burst\"\n"
        "target = \"127.0.0.1\"\ninterval = \"200ms\"\n"
    )
    proc, address = start_exporter(binary, config, workdir)
    bb = blackbox(workdir, seconds)
    bb_rtts = []
    try:
        time.sleep(1)
        first = scrape(address)
        ping = subprocess.Popen(
            ["ping", "-q", "-i", "0.01", "-w", str(seconds), "127.0.0.1"],
            stdout=subprocess.PIPE, text=True,
        )
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if bb:
                try:
                    text = scrape(bb[1], "/probe?module=icmp&target=127.0.0.1")
                    value = samples(text, "probe_icmp_duration_seconds").get('{phase="rtt"}')
                    if value is not None and samples(text, "probe_success").get("") == 1.0:
                        bb_rtts.append(value)
                except OSError:
                    pass
            time.sleep(0.2)
        ping_out = ping.communicate()[0]
        last = scrape(address)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        if bb:
            bb[0].terminate()
            bb[0].wait()
    ours_sum = samples(last, "loopscope_probe_rtt_seconds_sum")
    ours_count = samples(last, "loopscope_probe_rtt_seconds_count")
    first_sum = samples(first, "loopscope_probe_rtt_seconds_sum")
    first_count = samples(first, "loopscope_probe_rtt_seconds_count")
    key = next(iter(ours_sum))
    count = ours_count[key] - first_count.get(key, 0)
    ours_mean_us = (ours_sum[key] - first_sum.get(key, 0)) / count * 1e6
    match = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", ping_out)
    ping_avg_us = float(match.group(2)) * 1000.0
    result = {
        "ours_mean_us": ours_mean_us,
        "ours_replies": count,
        "ping_avg_us": ping_avg_us,
        "ping_min_us": float(match.group(1)) * 1000.0,
        "ratio_ours_to_ping": ours_mean_us / ping_avg_us,
    }
    if bb_rtts:
        result["blackbox_mean_us"] = sum(bb_rtts) / len(bb_rtts) * 1e6
        result["blackbox_probes"] = len(bb_rtts)
        result["ratio_blackbox_to_ping"] = result["blackbox_mean_us"] / ping_avg_us
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rtt-seconds", type=int, default=30)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the ICMP probes use raw sockets")
    binary = build()
    with tempfile.TemporaryDirectory() as workdir:
        load = load_phase(binary, args.targets, args.seconds, workdir)
        print("load:", load)
        rtt = rtt_phase(binary, args.rtt_seconds, workdir)
        print("rtt:", rtt)
    print(
        f"\n{load['targets']} targets x 5 packets every 1 s over {load['window_s']:.0f} s: "
        f"{load['probes_per_s']:.0f} probes/s, CPU {load['cpu_percent_of_one_core']:.1f} % of one "
        f"core (goal <= 25), scheduling lag p99 <= {load['lag_p99_upper_bound_ms']:.3g} ms "
        f"(goal <= 2), RSS peak {load['rss_peak_mib']:.1f} MiB (goal <= 64), "
        f"{load['packets_lost']:.0f} of {load['packets_sent']:.0f} packets lost, "
        f"{load['skipped']:.0f} probes skipped"
    )
    line = (
        f"ICMP RTT on 127.0.0.1, same window: ours mean {rtt['ours_mean_us']:.1f} us, "
        f"iputils ping avg {rtt['ping_avg_us']:.1f} us (ratio {rtt['ratio_ours_to_ping']:.3f})"
    )
    if "blackbox_mean_us" in rtt:
        line += (
            f", blackbox_exporter {rtt['blackbox_mean_us']:.1f} us "
            f"(ratio {rtt['ratio_blackbox_to_ping']:.3f})"
        )
    print(line)


if __name__ == "__main__":
    main()
