//! Kernel settings read from /proc/sys (per network namespace for net.*).

use std::io;
use std::path::Path;

/// Reads `net.ipv4.conf.lo.rp_filter` style names from /proc/sys; the value is trimmed.
pub(crate) fn read(name: &str) -> io::Result<String> {
    let path = Path::new("/proc/sys").join(name.replace('.', "/"));
    Ok(std::fs::read_to_string(path)?.trim().to_string())
}

/// Reads an integer setting.
pub(crate) fn read_int(name: &str) -> io::Result<i64> {
    read(name)?.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{name} is not a number"),
        )
    })
}

/// Whether this kernel has IPv6 at all (not built, or booted with ipv6.disable=1).
pub(crate) fn kernel_has_ipv6() -> bool {
    Path::new("/proc/sys/net/ipv6").exists() || Path::new("/proc/net/if_inet6").exists()
}

/// `net.ipv4.ping_group_range`: the groups allowed to open ICMP datagram sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PingGroupRange {
    /// The lowest group id allowed.
    pub low: u32,
    /// The highest group id allowed.
    pub high: u32,
}

impl PingGroupRange {
    /// Reads the running kernel's setting.
    pub(crate) fn read() -> io::Result<Self> {
        Self::parse(&read("net.ipv4.ping_group_range")?).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "unreadable ping_group_range")
        })
    }

    /// Parses the sysctl's text, `LOW HIGH`; `None` when it is not two numbers.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let mut fields = text.split_whitespace().map(str::parse::<u32>);
        let low = fields.next()?.ok()?;
        let high = fields.next()?.ok()?;
        Some(PingGroupRange { low, high })
    }

    /// Whether group `gid` may open ICMP datagram sockets.
    pub(crate) fn contains(&self, gid: u32) -> bool {
        self.low <= gid && gid <= self.high
    }

    /// The kernel default "1 0" (low above high): nobody may open ping sockets.
    pub(crate) fn is_empty(&self) -> bool {
        self.low > self.high
    }
}

/// The calling process's groups (effective and supplementary).
pub(crate) fn own_groups() -> Vec<u32> {
    let mut groups = vec![rustix::process::getegid().as_raw()];
    // Without the supplementary list (it cannot fail short of a kernel bug) the effective
    // group still answers the common case.
    if let Ok(supplementary) = rustix::process::getgroups() {
        groups.extend(supplementary.into_iter().map(|gid| gid.as_raw()));
    }
    groups.sort_unstable();
    groups.dedup();
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_group_range_forms() {
        let closed = PingGroupRange::parse("1\t0\n").unwrap();
        assert!(closed.is_empty() && !closed.contains(0) && !closed.contains(1));
        let open = PingGroupRange::parse("0 2147483647").unwrap();
        assert!(open.contains(0) && open.contains(1000) && !open.is_empty());
        assert_eq!(PingGroupRange::parse("x y"), None);
        assert_eq!(PingGroupRange::parse("5"), None);
    }

    /// Against `id -G` (coreutils), which reads the same process credentials by other code.
    #[test]
    fn own_groups_are_what_id_says() {
        let Ok(output) = std::process::Command::new("id").arg("-G").output() else {
            eprintln!("skipping: id is not installed");
            return;
        };
        let mut expected: Vec<u32> = String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .map(|gid| gid.parse().expect("numeric gid"))
            .collect();
        expected.sort_unstable();
        expected.dedup();
        assert_eq!(own_groups(), expected);
    }

    #[test]
    fn reads_a_sysctl_every_kernel_has() {
        assert!(read_int("net.ipv4.ip_forward").is_ok_and(|v| v == 0 || v == 1));
    }
}
