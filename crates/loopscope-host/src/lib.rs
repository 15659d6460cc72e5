//! This host's loopback health: netlink and /proc inspection, ICMP echo, the doctor checks.
