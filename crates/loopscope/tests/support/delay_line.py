#!/usr/bin/env python3
"""A user-space delay line on a TUN device, standing in for `tc qdisc ... netem delay` on
kernels built without netem. Python standard library only.

    delay_line.py DEVICE DELAY_MS JITTER_MS SEED

Creates the TUN device DEVICE (IFF_TUN | IFF_NO_PI: bare IP packets), brings it up, prints
{"event": "ready"}, then holds every packet the kernel routes into it for DELAY_MS plus a
jitter drawn per packet, uniform in [-JITTER_MS, +JITTER_MS] as netem draws it when no
distribution table is given (a negative total is clipped to 0), and writes it back into the
device, where the kernel receives it again (iif DEVICE) and forwards it on. Packets leave in
the order of their release times, not of their arrival (as with netem's jitter): a packet can
overtake an earlier one only when they came closer together than the jitter's spread.

The referee is what this program records, per packet, not what the system under test
reports. Two holds are recorded:
- `user_hold_us`: the monotonic clock from just after the read to just after the write;
- `kernel_hold_us`: the kernel's own timestamps (SO_TIMESTAMPNS on an AF_PACKET socket bound
  to the device) of the packet entering the device (PACKET_OUTGOING, stamped in
  dev_queue_xmit_nit) and of the same bytes coming back out of it (stamped on receive). This
  one also holds the time the packet waited in the TUN queue before this program woke up to
  read it, which a busy machine stretches and `user_hold_us` cannot see.

On SIGTERM it stops (packets still held are counted as `dropped_at_stop`), prints one
{"event": "held", ...} line per packet released and a last {"event": "done", ...} line.
"""

import fcntl
import heapq
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_UP = 0x1
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFTXQLEN = 0x8943
# The TUN device's queue (its ring of packets not yet read): deep enough that a delay line
# that falls behind delays packets rather than dropping them.
TX_QUEUE_LEN = 8192
# SCHED_FIFO priority, the one `loopscope --realtime` takes.
REALTIME_PRIORITY = 10
ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
PACKET_OUTGOING = 4
# The UDP payload octets logged with each packet, enough for a STAMP reply's Session-Sender
# Sequence Number (octets 24-27, RFC 8762 §4.3.1).
PAYLOAD_HEAD = 32


def open_tun(name):
    tun = os.open("/dev/net/tun", os.O_RDWR)
    ifr = struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI)
    fcntl.ioctl(tun, TUNSETIFF, ifr)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as control:
        fcntl.ioctl(control, SIOCSIFTXQLEN, struct.pack("16si", name.encode(), TX_QUEUE_LEN))
        ifr = fcntl.ioctl(control, SIOCGIFFLAGS, struct.pack("16sH", name.encode(), 0))
        flags = struct.unpack("16sH", ifr[:18])[1]
        fcntl.ioctl(control, SIOCSIFFLAGS, struct.pack("16sH", name.encode(), flags | IFF_UP))
    return tun


def open_tap(name):
    tap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    tap.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    tap.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    tap.bind((name, ETH_P_ALL))
    tap.setblocking(False)
    return tap


def drain_tap(tap, entered, left):
    """Reads every stamped copy waiting on the tap: packets entering the device (outgoing from
    the kernel's side) by their bytes in `entered`, those coming back in `left`."""
    while True:
        try:
            data, ancillary, _flags, address = tap.recvmsg(65536, socket.CMSG_SPACE(16))
        except BlockingIOError:
            return
        stamp = None
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", value[:16])
                stamp = seconds * 1_000_000_000 + nanoseconds
        if stamp is None:
            continue
        book = entered if address[2] == PACKET_OUTGOING else left
        book.setdefault(bytes(data), stamp)


def describe(packet):
    """Addresses, ports and the head of the UDP payload of an IPv4 packet."""
    version = packet[0] >> 4
    if version != 4 or len(packet) < 20:
        return {"version": version}
    header = (packet[0] & 0x0F) * 4
    described = {
        "src": socket.inet_ntoa(packet[12:16]),
        "dst": socket.inet_ntoa(packet[16:20]),
        "protocol": packet[9],
        "ttl": packet[8],
    }
    if packet[9] == socket.IPPROTO_UDP and len(packet) >= header + 8:
        sport, dport = struct.unpack("!HH", packet[header : header + 4])
        described["sport"] = sport
        described["dport"] = dport
        described["payload_head"] = packet[header + 8 : header + 8 + PAYLOAD_HEAD].hex()
    return described


def main():
    name, delay_ms, jitter_ms, seed = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    draw = random.Random(seed)
    # SIGTERM wakes the select through a pipe rather than raising inside a write.
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    # netem holds packets in the kernel, on a timer no process can delay; this stand-in runs
    # under SCHED_FIFO where it may, so that a busy machine makes it late less often (what
    # lateness remains is in its record all the same).
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
        realtime = True
    except PermissionError:
        realtime = False
    tun = open_tun(name)
    tap = open_tap(name)
    print(json.dumps({"event": "ready", "device": name, "realtime": realtime}), flush=True)

    held = []  # heap of (release at, arrival order, packet, read at, drawn hold)
    arrivals = 0
    released = []
    entered, left = {}, {}
    while True:
        timeout = None
        if held:
            timeout = max(0.0, (held[0][0] - time.monotonic_ns()) / 1e9)
        readable, _, _ = select.select([tun, tap, wake_read], [], [], timeout)
        if wake_read in readable:
            break
        if tap in readable:
            drain_tap(tap, entered, left)
        if tun in readable:
            packet = os.read(tun, 65536)
            read_at = time.monotonic_ns()
            drawn = max(0.0, delay_ms + draw.uniform(-jitter_ms, jitter_ms))
            heapq.heappush(held, (read_at + int(drawn * 1e6), arrivals, packet, read_at, drawn))
            arrivals += 1
        while held and held[0][0] <= time.monotonic_ns():
            _, _, packet, read_at, drawn = heapq.heappop(held)
            os.write(tun, packet)
            written_at = time.monotonic_ns()
            released.append((packet, drawn, (written_at - read_at) / 1e3))
    drain_tap(tap, entered, left)
    for packet, drawn, user_hold_us in released:
        record = {"event": "held", "drawn_us": round(drawn * 1e3, 3), "user_hold_us": round(user_hold_us, 3)}
        went_in, came_out = entered.get(packet), left.get(packet)
        record["kernel_hold_us"] = None if went_in is None or came_out is None else (came_out - went_in) / 1e3
        record.update(describe(packet))
        print(json.dumps(record))
    print(json.dumps({"event": "done", "released": len(released), "dropped_at_stop": len(held)}), flush=True)


if __name__ == "__main__":
    main()
