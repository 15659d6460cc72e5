//! ICMP echo: the wire format, the two socket kinds, and the ping loop.

pub mod ping;
pub mod socket;
pub mod wire;

pub use ping::{PingConfig, PingEvent, PingRun, ping};
pub use socket::{EchoReply, EchoSocket, IcmpError, SocketChoice, SocketKind};
