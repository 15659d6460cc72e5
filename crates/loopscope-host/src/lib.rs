//! This host's loopback health: netlink and /proc inspection, ICMP echo, the doctor checks.

#![forbid(unsafe_code)]

pub mod doctor;
pub mod environment;
pub mod firewall;
pub mod icmp;
pub mod loops;
pub mod proc_net;
pub mod resolver;
pub mod sysctl;
