//! This host's loopback health: netlink and /proc inspection, ICMP echo, the doctor checks.

pub mod icmp;
pub mod netlink;
