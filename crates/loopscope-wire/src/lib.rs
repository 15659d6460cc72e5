//! loopscope's wire formats, in the manner of smoltcp's `wire` module: for each format a
//! zero-copy view over a byte buffer (`EchoPacket`, `Frame`, `DatagramHeader`) with field
//! accessors, and a `Repr` that parses from a view and emits into one. Every format has its own
//! error type. Nothing here does I/O or allocates on the parse path.
//!
//! - [`icmp`]: ICMP and ICMPv6 echo request and reply (RFC 792, RFC 4443), the Internet
//!   checksum (RFC 1071), the IPv4 header a raw socket hands over (RFC 791), and the stamp
//!   loopscope puts at the start of every echo payload.
//! - [`ping_frame`]: the self-delimiting frame `ping` sends over any link, and a decoder that
//!   finds frames in a byte stream.
//! - [`bfd`]: the BFD Control packet and its Authentication Section (RFC 5880), the echo
//!   packet loopscope sends.
//! - [`datagram`]: the header that numbers each datagram of a datagram link (`udp:`,
//!   `unixgram:`).
//! - [`pcapng`]: the pcapng blocks the capture adapter and `martians --write-matches` write.
//! - [`cfm`]: Ethernet loopback PDUs (Y.1731 / IEEE 802.1ag LBM and LBR).
//! - [`stamp`]: STAMP test packets (RFC 8762, RFC 8972 TLVs), unauthenticated and
//!   authenticated, which TWAMP-Light shares.

#![forbid(unsafe_code)]

pub mod bfd;
pub mod cfm;
mod checksum;
pub mod datagram;
pub mod icmp;
pub mod ipv4;
pub mod pcapng;
pub mod ping_frame;
pub mod stamp;
