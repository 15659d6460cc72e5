//! Transports: one module per way of carrying bytes to a far end and back.

pub mod audio;
pub mod datagram;
pub mod exec;
pub mod icmp;
pub mod ip;
pub mod memory;
pub mod pty;
pub(crate) mod send;
pub mod serial;
pub(crate) mod stream;
pub mod tcp;
pub mod udp;
pub mod unix;
