//! This host's loopback health: netlink and /proc inspection and the doctor checks (whose round
//! trips run `loopscope-measure`'s engines).

#![forbid(unsafe_code)]

pub mod doctor;
pub mod environment;
pub mod firewall;
pub mod proc_net;
pub mod resolver;
pub mod sysctl;
