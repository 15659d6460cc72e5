//! This host's loopback health: netlink and /proc inspection and the doctor checks (whose round
//! trips run `loopscope-measure`'s engines).

#![forbid(unsafe_code)]

pub mod doctor;
mod environment;
mod firewall;
mod proc_net;
mod resolver;
mod sysctl;
