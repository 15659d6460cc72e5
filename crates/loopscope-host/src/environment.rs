//! Where this process runs: which network namespace, which container.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What we could tell about the surroundings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Surroundings {
    /// `Some(true)` when our network namespace differs from PID 1's; `None` when we cannot see
    /// PID 1's (not root, or a PID namespace).
    pub separate_netns: Option<bool>,
    /// The `ip netns` name of our namespace, when it has one.
    pub netns_name: Option<String>,
    /// The namespace identity, e.g. `net:[4026531840]`.
    pub netns_id: Option<String>,
    /// Evidence of a container, e.g. `/.dockerenv`, `container=podman`, `cgroup: kubepods`.
    pub container_evidence: Vec<String>,
}

/// Looks at what this process runs in: its network namespace and signs of a container, which
/// explain findings the host itself cannot (a missing `lo` address in a fresh namespace).
pub(crate) fn inspect() -> Surroundings {
    let own = std::fs::read_link("/proc/self/ns/net")
        .ok()
        .map(|link| link.display().to_string());
    let init = std::fs::read_link("/proc/1/ns/net")
        .ok()
        .map(|link| link.display().to_string());
    let separate_netns = match (&own, &init) {
        (Some(own), Some(init)) => Some(own != init),
        _ => None,
    };
    Surroundings {
        separate_netns,
        netns_name: netns_name(),
        netns_id: own,
        container_evidence: container_evidence(),
    }
}

/// Finds our namespace among the bind mounts `ip netns add` makes under /run/netns.
fn netns_name() -> Option<String> {
    let own = std::fs::metadata("/proc/self/ns/net").ok()?;
    std::fs::read_dir("/run/netns")
        .ok()?
        .flatten()
        .find(|entry| {
            std::fs::metadata(entry.path())
                .is_ok_and(|meta| meta.dev() == own.dev() && meta.ino() == own.ino())
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
}

fn container_evidence() -> Vec<String> {
    let mut evidence = Vec::new();
    for (path, what) in [
        ("/.dockerenv", "/.dockerenv: Docker"),
        ("/run/.containerenv", "/run/.containerenv: Podman"),
    ] {
        if Path::new(path).exists() {
            evidence.push(what.to_string());
        }
    }
    if let Ok(value) = std::env::var("container") {
        evidence.push(format!("container={value}"));
    }
    if let Ok(cgroup) = std::fs::read_to_string("/proc/self/cgroup") {
        for marker in ["docker", "kubepods", "containerd", "lxc", "libpod", "crio"] {
            if cgroup.contains(marker) {
                evidence.push(format!("cgroup mentions {marker}"));
                break;
            }
        }
    }
    evidence
}

#[cfg(test)]
mod tests {
    #[test]
    fn our_namespace_has_an_identity() {
        let found = super::inspect();
        assert!(found.netns_id.is_some_and(|id| id.starts_with("net:[")));
    }
}
