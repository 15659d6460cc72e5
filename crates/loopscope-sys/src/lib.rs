//! Every syscall wrapper and every `unsafe` block of loopscope live here, so that every other
//! crate can say `#![forbid(unsafe_code)]`. Each module wraps one kernel interface and offers a
//! safe API; each `unsafe` block carries a SAFETY comment.
//!
//! Where rustix or nix offer a call safely it is used (poll, recv, read, write, splice, pipes,
//! termios, interface names); what is here in `unsafe` is what they do not cover: serial-port
//! ioctls, AF_PACKET addresses and BPF filters, and ICMP6_FILTER.
//!
//! # Waiting: the EINTR rule and the timeout meaning
//!
//! [`wait_readable`] is the one wait of the workspace. A wait never retries after a signal: it
//! returns [`Readiness::Interrupted`] (or an `Interrupted` error from the calls that return
//! bytes) so the caller can check its stop flag. A timeout is [`Readiness::TimedOut`] (or a
//! `TimedOut` error), never a message to parse. Calls that have already moved data retry EINTR
//! themselves. The details are on the functions.
//!
//! # Modules
//!
//! The modules are private; what callers use is re-exported here:
//!
//! - waiting and descriptor I/O: [`wait_readable`], [`recv_timeout`], [`read_timeout`],
//!   [`write_all`], [`SocketTimeout`];
//! - netlink: [`RouteSocket`] (interfaces, addresses, routes) and [`SockDiag`] (listening
//!   sockets), one netlink-packet-* version line; [`enter_new_network_namespace`] (a thread's
//!   own namespace with `lo` up, for tests);
//! - `/proc/net/{tcp,tcp6,udp,udp6}`: [`parse_proc_net`], [`ProcNetTable`];
//! - serial ports: [`set_modem_bits`], [`set_rs485`], [`line_counters`];
//! - zero-copy echo: [`SplicePipe`];
//! - AF_PACKET: [`PacketSocket`], [`FrameSender`], [`interface_index`], [`interface_name`];
//!   one EtherType on one interface, with kernel receive timestamps and multicast
//!   membership: [`EthernetSocket`] (the Ethernet loopback);
//! - [`set_icmpv6_filter`]; [`attach_filter`] (SO_ATTACH_FILTER: a classic BPF program on any
//!   socket, such as a raw ICMP socket that should wake only for its own echo replies);
//! - TTL and hop limit of UDP datagrams (BFD's GTSM check) and their destination address:
//!   [`set_send_hops`], [`enable_hops_reception`], [`enable_destination_reception`] (read back
//!   through [`recv_datagram`] or [`recv_datagrams`], the one receive path);
//! - the allocator: [`use_one_malloc_arena`], [`release_free_memory`] (a server's RSS back to
//!   its start when its clients leave);
//! - sending on a schedule: [`DeadlineTimer`] (absolute timerfd deadlines),
//!   [`set_realtime_priority`] (SCHED_FIFO);
//! - sending without copying: [`send_zerocopy`] (MSG_ZEROCOPY) and its completions;
//! - what `perf` measures: [`tcp_info`] (TCP_INFO), [`recv_discard`] (MSG_TRUNC), CPU time
//!   ([`thread_cpu_time`], [`process_cpu_time`]);
//! - kernel packet timestamps and per-datagram facts (SO_TIMESTAMPING, TTL, TOS, PKTINFO),
//!   a test stream's TTL/DSCP/DF, the clock's sync status (adjtimex):
//!   [`enable_datagram_metadata`], [`recv_datagram`], [`recv_datagrams`] (recvmmsg),
//!   [`send_datagrams`] (sendmmsg), [`recv_tx_timestamp`], [`set_send_options`], [`clock_sync`].

mod deadline;
mod ethernet;
mod fdio;
mod hops;
mod memory;
mod namespace;
mod netlink;
mod packet;
mod procfs;
mod rusage;
mod socket_filter;
mod sockopt;
mod splice;
mod tcp;
mod timestamping;
mod tty;
mod zerocopy;

pub use deadline::{DeadlineTimer, set_realtime_priority};
pub use ethernet::{EthernetSocket, PACKET_OUTGOING, ReceivedFrame};
pub use fdio::{
    COARSE_TIMEOUT, Readiness, SocketTimeout, read_timeout, recv_timeout, set_receive_timeout,
    timed_out, wait_readable, wait_writable, write_all,
};
pub use hops::{enable_destination_reception, enable_hops_reception, set_send_hops};
pub use memory::{PageBuffer, release_free_memory, use_one_malloc_arena};
pub use namespace::enter_new_network_namespace;
pub use netlink::{
    DiagProtocol, DiagSocket, Interface, InterfaceAddress, Neighbour, NetlinkError, Route,
    RouteKind, RouteSocket, SockDiag, TABLE_LOCAL, TABLE_MAIN,
};
pub use packet::{
    BpfInstruction, FrameSender, PacketInfo, PacketSocket, interface_index, interface_name,
};
pub use procfs::{
    ProcNetParse, ProcNetSocket, ProcNetTable, ProcNetTableText, TCP_CLOSE, TCP_LISTEN,
    parse_proc_net,
};
pub use rusage::{CpuTime, process_cpu_time, thread_cpu_time};
pub use socket_filter::attach_filter;
pub use sockopt::set_icmpv6_filter;
pub use splice::SplicePipe;
pub use tcp::{TcpInfo, recv_discard, tcp_info};
pub use timestamping::{
    ClockPair, ClockSync, SendOptions, TX_TIMESTAMP_BATCH, TimestampedDatagram, TxTimestamp,
    clock_sync, enable_datagram_metadata, enable_timestamping, recv_datagram, recv_datagrams,
    recv_tx_timestamp, recv_tx_timestamps, send_datagrams, set_send_options,
};
pub use tty::{
    LineCounters, Rs485Config, TIOCM_LOOP, line_counters, modem_bits, set_modem_bits, set_rs485,
    tty_fd, tty_into_fd,
};
pub use zerocopy::{ZerocopyCompletions, enable_zerocopy, reap_zerocopy, send_zerocopy};
