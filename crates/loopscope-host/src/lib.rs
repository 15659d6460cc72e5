//! This host's loopback health: netlink and /proc inspection, ICMP echo, the doctor checks.

pub mod doctor;
pub mod environment;
pub mod firewall;
pub mod icmp;
pub mod loops;
pub mod netlink;
pub mod proc_net;
pub mod resolver;
pub mod sysctl;
