#!/usr/bin/env python3
"""Servers under load: `loopscope reflect` facing many clients, aborts and floods.

Usage: bench/reflect_load.py [--bin target/release/loopscope] [--clients 2000] [--rounds 1]
                             [--aborts 10000] [--sources 1000] [--flood-seconds 5] [--only PHASE]
                             [--abort-max-connections N] [--smaps]

Phases, each against a fresh reflector:
  tcp-concurrent  N clients connect at once, each sends 1 KiB and reads it back, all held open
  tcp-abort       connect-and-reset cycles (SO_LINGER 0), as a scanner or a crashing client does
  udp-flood       datagrams from many source ports at full rate for a few seconds
  udp-sizes       one datagram of every size from 0 to 65,507 bytes (every 97th size, plus the ends)

For each: the reflector's RSS before, at peak and after, its open descriptors before and after,
replies per second, request and reply bytes (reply bytes must never exceed request bytes) and
what the reflector says it refused. On demand, not in CI.
"""
import argparse, json, os, re, resource, selectors, socket, subprocess, sys, threading, time

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

def anon_kib(pid):
    """Anonymous memory (heap, stacks): RSS without the program's own code and data pages,
    which the first client pages in once and which are not memory the reflector holds."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                return int(line.split()[1])
    return 0

def smaps(pid):
    """Each mapping's resident and anonymous KiB, keyed by its address range and name."""
    maps, key = {}, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                # Keyed by where the mapping starts: the heap keeps its start as it grows.
                key = (fields[0].split("-")[0], fields[0], fields[5] if len(fields) > 5 else "[anonymous]")
                maps[key] = {"Rss": 0, "Anonymous": 0}
            elif fields[0].rstrip(":") in ("Rss", "Anonymous") and key:
                maps[key][fields[0].rstrip(":")] = int(fields[1])
    return maps

def smaps_diff(name, before, after):
    """Prints every mapping whose resident size changed, and the totals: where memory went."""
    rows = []
    start_of = lambda m: {key[0]: (key, value) for key, value in m.items()}
    before, after = start_of(before), start_of(after)
    empty = {"Rss": 0, "Anonymous": 0}
    for start in sorted(set(before) | set(after)):
        key, b = before.get(start, (None, empty))
        key2, a = after.get(start, (None, empty))
        if a != b:
            rows.append((a["Rss"] - b["Rss"], key2 or key, b, a))
    for delta, (_, span, path), b, a in sorted(rows, key=lambda r: -abs(r[0])):
        start, end = (int(x, 16) for x in span.split("-"))
        print(f"  smaps {name}: {span} {(end - start) >> 10:8} KiB {path[-40:]:40} rss {b['Rss']:6} -> {a['Rss']:6} "
              f"anon {b['Anonymous']:6} -> {a['Anonymous']:6} ({delta:+} KiB)")
    total = lambda m, k: sum(v[k] for _, v in m.values())
    print(f"  smaps {name}: total rss {total(before, 'Rss')} -> {total(after, 'Rss')}, "
          f"anonymous {total(before, 'Anonymous')} -> {total(after, 'Anonymous')}", flush=True)

def extra_arenas(pid):
    """glibc malloc arenas besides the main one: each is a heap mapped at a 64 MiB alignment
    (HEAP_MAX_SIZE), read-write at its start and the rest of the 64 MiB reserved PROT_NONE. No
    trim returns such an arena's free top, so the reflector wants none (issue 12)."""
    with open(f"/proc/{pid}/maps") as f:
        maps = [line.split() for line in f]
    count = 0
    for here, after in zip(maps, maps[1:]):
        start, end = (int(x, 16) for x in here[0].split("-"))
        start2, end2 = (int(x, 16) for x in after[0].split("-"))
        if (start % (64 << 20) == 0 and len(here) == 5 and here[1].startswith("rw")
                and start2 == end and after[1].startswith("---") and end2 - start == 64 << 20):
            count += 1
    return count

def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))

class Reflector:
    def __init__(self, binary, endpoint, *extra):
        self.proc = subprocess.Popen([binary, "--json", "reflect", endpoint, "--quiet", *extra],
                                     stdout=subprocess.PIPE, text=True)
        first = json.loads(self.proc.stdout.readline())  # waits for the listening event
        self.endpoint = first["endpoint"]
        host, port = self.endpoint.split("//", 1)[1].rsplit(":", 1)
        self.address = (host.strip("[]"), int(port))
        # "Before" is the reflector at rest: the listening line comes as its services start, and
        # a service may still be setting up (the stream echo loops start right after it).
        steady(self.proc.pid)
        self.peak = rss_kib(self.proc.pid)
        self.threads = threads(self.proc.pid)
        self.anon = anon_kib(self.proc.pid)
        self.smaps = smaps(self.proc.pid) if SMAPS else None
        self.peak_smaps = self.smaps
        self.peak_fds = fds(self.proc.pid)
        self.running = True
        # Read its output as it comes, as a terminal or a log collector would: a reflector
        # whose stdout nobody reads may block writing it.
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        threading.Thread(target=self._watch, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def _watch(self):
        while self.running and self.proc.poll() is None:
            try:
                rss = rss_kib(self.proc.pid)
                if rss > self.peak and SMAPS:
                    self.peak_smaps = smaps(self.proc.pid)
                self.peak = max(self.peak, rss)
                self.peak_fds = max(self.peak_fds, fds(self.proc.pid))
            except OSError:
                return
            time.sleep(0.01)

    def stop(self):
        self.running = False
        self.proc.send_signal(2)
        self.proc.wait(timeout=30)
        self.reader.join(timeout=30)
        summary = [json.loads(l) for l in self.lines if l.strip()]
        return summary[-1] if summary else {}

# --smaps: print, per mapping, where resident memory went between "before", the peak and "after".
SMAPS = False

def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))

def steady(pid, seconds=10.0):
    """Waits until the thread count and RSS have not changed for a second."""
    deadline = time.monotonic() + seconds
    last, steady_since = (threads(pid), rss_kib(pid)), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - steady_since < 1.0:
        time.sleep(0.05)
        now = (threads(pid), rss_kib(pid))
        if now != last:
            last, steady_since = now, time.monotonic()

def settle(pid, before, threads_before, seconds=60.0):
    """RSS and descriptors once the clients have gone: waits until descriptors and threads are
    back to their start (a connection's thread ends after its socket closes), then until RSS has
    not changed for a second (the reflector gives memory back when it goes idle)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (fds(pid) > before or threads(pid) > threads_before):
        time.sleep(0.05)
    last, steady_since = rss_kib(pid), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - steady_since < 1.0:
        time.sleep(0.1)
        now = rss_kib(pid)
        if now != last:
            last, steady_since = now, time.monotonic()
    return rss_kib(pid), fds(pid), anon_kib(pid)

def report(name, r, rss0, fd0, sent, received, seconds, extra=""):
    rss1, fd1, anon1 = settle(r.proc.pid, fd0, r.threads)
    arenas = extra_arenas(r.proc.pid)
    if SMAPS:
        smaps_diff(f"{name} at peak", r.smaps, r.peak_smaps)
        smaps_diff(f"{name} after", r.smaps, smaps(r.proc.pid))
    summary = r.stop()
    refused = {k: v for k, v in summary.items()
               if "refus" in k or "limit" in k or "dropped" in k or k == "connections"}
    print(f"{name:15} rss KiB before {rss0:7} peak {r.peak:7} after {rss1:7} (anonymous {r.anon} -> {anon1})  fds {fd0}->{fd1} (peak {r.peak_fds})  "
          f"replies/s {received[0] / max(seconds, 1e-9):10.0f}  bytes in {sent[1]} out {received[1]} "
          f"{'OK' if received[1] <= sent[1] else 'AMPLIFIED'}  malloc arenas besides the main one {arenas}  refused {refused} {extra}")

def tcp_round(r, clients):
    """One round: `clients` connect at once, each sends 1 KiB and reads it back, then all leave."""
    start = time.monotonic()
    socks, sent, got, refused = [], [0, 0], [0, 0], 0
    payload = os.urandom(1024)
    for _ in range(clients):
        s = socket.socket()
        s.settimeout(30)
        try:
            s.connect(r.address)
            s.sendall(payload)
            socks.append(s)
            sent[0] += 1; sent[1] += len(payload)
        except OSError:
            refused += 1
    for s in socks:
        data = b""
        try:
            while len(data) < len(payload):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        if data == payload:
            got[0] += 1
        got[1] += len(data)
    seconds = time.monotonic() - start
    for s in socks:
        s.close()
    return sent, got, refused, seconds

def tcp_concurrent(binary, clients, rounds):
    """`rounds` rounds against one reflector. RSS after each round tells a leak (grows every
    round) from memory the allocator keeps for reuse (grows once, then stays). The connection
    limit is raised above the client count (the default, 1,024, would refuse the rest)."""
    r = Reflector(binary, "tcp://127.0.0.1:0", "--max-connections", str(clients + 16))
    rss0, fd0 = rss_kib(r.proc.pid), fds(r.proc.pid)
    for round_number in range(1, rounds):
        sent, got, refused, seconds = tcp_round(r, clients)
        rss1, fd1, anon1 = settle(r.proc.pid, fd0, r.threads)
        print(f"tcp-concurrent round {round_number:3}: answered {got[0]}/{clients} in {seconds:.1f}s  "
              f"rss KiB after {rss1:7} (anonymous {anon1}, peak so far {r.peak})  fds {fd1}", flush=True)
    sent, got, refused, seconds = tcp_round(r, clients)
    report("tcp-concurrent", r, rss0, fd0, sent, got, seconds, f"clients {clients} rounds {rounds} unanswered (last round) {clients - got[0]} refused-at-connect {refused}")

def tcp_abort(binary, cycles, max_connections=None):
    """With --abort-max-connections small (16), the loops must keep up with a fast client or
    close the gone clients when the limit is reached: a reflector that counts clients already
    gone against the limit refuses live ones (issue 12)."""
    extra = ["--max-connections", str(max_connections)] if max_connections else []
    r = Reflector(binary, "tcp://127.0.0.1:0", *extra)
    rss0, fd0 = rss_kib(r.proc.pid), fds(r.proc.pid)
    start, failed = time.monotonic(), 0
    for _ in range(cycles):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        try:
            s.connect(r.address)
        except OSError:
            failed += 1
        s.close()
    seconds = time.monotonic() - start
    # Every cycle is either a connection the reflector counted or one it refused and counted
    # ("connections" + "connections_refused" in the summary), or failed at connect here.
    report("tcp-abort", r, rss0, fd0, [cycles, 0], [0, 0], seconds,
           f"cycles {cycles} in {seconds:.1f}s, failed at connect {failed}")

def udp_flood(binary, sources, flood_seconds):
    r = Reflector(binary, "udp://127.0.0.1:0")
    rss0, fd0 = rss_kib(r.proc.pid), fds(r.proc.pid)
    socks = []
    for _ in range(sources):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    payload = os.urandom(64)
    sent, got = [0, 0], [0, 0]
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    start = time.monotonic()
    while time.monotonic() - start < flood_seconds:
        for s in socks:
            try:
                s.sendto(payload, r.address)
                sent[0] += 1; sent[1] += len(payload)
            except BlockingIOError:
                pass
        for key, _ in sel.select(0):
            while True:
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    break
                got[0] += 1; got[1] += len(data)
    drain_until = time.monotonic() + 1
    while time.monotonic() < drain_until:
        for key, _ in sel.select(0.1):
            try:
                data = key.fileobj.recv(65536)
                got[0] += 1; got[1] += len(data)
            except BlockingIOError:
                pass
    seconds = time.monotonic() - start
    for s in socks:
        s.close()
    report("udp-flood", r, rss0, fd0, sent, got, seconds, f"sources {sources} sent {sent[0]} replies {got[0]}")

def udp_sizes(binary):
    # Without the per-source limit: this phase is about sizes. A serial client is still far
    # over the default 1,000 datagrams/s (a round trip on loopback takes tens of microseconds):
    # with the limit on, the 200-datagram burst ran out after ~210 small datagrams and one was
    # refused every time, as the limit is meant to.
    r = Reflector(binary, "udp://127.0.0.1:0", "--rate-limit", "0")
    rss0, fd0 = rss_kib(r.proc.pid), fds(r.proc.pid)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.settimeout(2)
    sizes = sorted(set(list(range(0, 65508, 97)) + [0, 1, 65507]))
    sent, got, wrong = [0, 0], [0, 0], 0
    start = time.monotonic()
    for size in sizes:
        data = os.urandom(size)
        s.sendto(data, r.address)
        sent[0] += 1; sent[1] += size
        try:
            back = s.recv(65536)
            got[0] += 1; got[1] += len(back)
            wrong += back != data
        except socket.timeout:
            pass
    seconds = time.monotonic() - start
    report("udp-sizes", r, rss0, fd0, sent, got, seconds, f"sizes {len(sizes)} answered {got[0]} altered {wrong}")

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default="target/release/loopscope")
    p.add_argument("--clients", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=1, help="tcp-concurrent rounds against one reflector")
    p.add_argument("--only", help="run only this phase (tcp-concurrent, tcp-abort, udp-flood, udp-sizes)")
    p.add_argument("--aborts", type=int, default=10000)
    p.add_argument("--abort-max-connections", type=int,
                   help="tcp-abort against a reflector with this connection limit (default: its own, 1,024)")
    p.add_argument("--sources", type=int, default=1000)
    p.add_argument("--flood-seconds", type=float, default=5)
    p.add_argument("--smaps", action="store_true", help="print each mapping whose resident memory changed")
    a = p.parse_args()
    global SMAPS
    SMAPS = a.smaps
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    phases = {
        "tcp-concurrent": lambda: tcp_concurrent(a.bin, a.clients, max(a.rounds, 1)),
        "tcp-abort": lambda: tcp_abort(a.bin, a.aborts, a.abort_max_connections),
        "udp-flood": lambda: udp_flood(a.bin, a.sources, a.flood_seconds),
        "udp-sizes": lambda: udp_sizes(a.bin),
    }
    for name, phase in phases.items():
        if a.only in (None, name):
            phase()

if __name__ == "__main__":
    main()
