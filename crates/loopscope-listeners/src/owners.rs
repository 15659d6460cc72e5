//! Which processes hold which socket: every `/proc/PID/fd/N` that links to `socket:[INODE]`.
//! There is no kernel interface from a socket inode to its holders; `ss -p`, `lsof` and
//! `netstat -p` all walk /proc the same way. Links are read with `readlinkat` relative to the
//! open fd directory so the kernel does not walk the full path for every descriptor.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::path::Path;

use rustix::fs::{AtFlags, Dir, Mode, OFlags};

use crate::model::Process;

/// The result of walking /proc.
#[derive(Debug, Default)]
pub(crate) struct Owners {
    /// Socket inode -> pids holding it (each pid once, ascending).
    pub by_inode: HashMap<u64, Vec<u32>>,
    /// What we learned about each holding process.
    pub processes: HashMap<u32, Process>,
    /// Processes whose fd table could not be read (permission: not root, or ptrace rules).
    pub unreadable: usize,
    /// False when /proc itself could not be listed: no owners at all.
    pub proc_listed: bool,
}

/// Walks `proc_root` (normally `/proc`) for the holders of the `wanted` inodes.
pub(crate) fn scan(proc_root: &Path, wanted: &HashSet<u64>) -> Owners {
    let mut owners = Owners::default();
    let Ok(root) = rustix::fs::open(
        proc_root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return owners;
    };
    let Ok(mut entries) = Dir::read_from(&root) else {
        return owners;
    };
    owners.proc_listed = true;
    if wanted.is_empty() {
        return owners;
    }
    let mut link = Vec::with_capacity(64);
    while let Some(Ok(entry)) = entries.read() {
        let Some(pid) = parse_pid(entry.file_name()) else {
            continue;
        };
        let fd_dir_path = format!("{pid}/fd");
        let fd_dir = match rustix::fs::openat(
            &root,
            fd_dir_path.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // The process ended meanwhile: nothing to report.
            Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::SRCH) => continue,
            Err(_) => {
                owners.unreadable += 1;
                continue;
            }
        };
        let Ok(mut fds) = Dir::new(fd_dir) else {
            owners.unreadable += 1;
            continue;
        };
        let mut holds_wanted = false;
        while let Some(Ok(fd_entry)) = fds.read() {
            let name = fd_entry.file_name();
            if name.to_bytes().first() == Some(&b'.') {
                continue;
            }
            let Ok(dir_fd) = fds.fd() else { break };
            let Ok(target) = rustix::fs::readlinkat(dir_fd, name, std::mem::take(&mut link)) else {
                continue;
            };
            if let Some(inode) = socket_inode(target.as_bytes())
                && wanted.contains(&inode)
            {
                let holders = owners.by_inode.entry(inode).or_default();
                if holders.last() != Some(&pid) {
                    holders.push(pid);
                }
                holds_wanted = true;
            }
            link = target.into_bytes();
            link.clear();
        }
        if holds_wanted {
            owners.processes.insert(
                pid,
                describe(&root, pid).unwrap_or(Process {
                    pid,
                    command: String::new(),
                    uid: None,
                    user: None,
                }),
            );
        }
    }
    for holders in owners.by_inode.values_mut() {
        holders.sort_unstable();
        holders.dedup();
    }
    owners
}

fn parse_pid(name: &CStr) -> Option<u32> {
    let bytes = name.to_bytes();
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// `socket:[12345]` -> 12345.
pub(crate) fn socket_inode(link: &[u8]) -> Option<u64> {
    let digits = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Command name (`comm`) and owner uid (the owner of `/proc/PID`, its effective uid).
fn describe(root: &rustix::fd::OwnedFd, pid: u32) -> Option<Process> {
    let stat = rustix::fs::statat(root, format!("{pid}").as_str(), AtFlags::empty()).ok();
    let comm_fd = rustix::fs::openat(
        root,
        format!("{pid}/comm").as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut buffer = [0u8; 64];
    let read = rustix::io::read(&comm_fd, &mut buffer).ok()?;
    let command = String::from_utf8_lossy(&buffer[..read])
        .trim_end_matches('\n')
        .to_string();
    Some(Process {
        pid,
        command,
        uid: stat.map(|s| s.st_uid),
        user: None,
    })
}

/// uid -> user name, looked up once per uid (getpwuid_r reads /etc/passwd or NSS).
#[derive(Default)]
pub(crate) struct UserNames {
    cache: HashMap<u32, Option<String>>,
}

impl UserNames {
    /// The name of `uid` (from the passwd database), looked up once.
    pub(crate) fn name(&mut self, uid: u32) -> Option<String> {
        self.cache
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|user| user.name)
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_links_give_their_inode() {
        assert_eq!(socket_inode(b"socket:[12345]"), Some(12345));
        assert_eq!(socket_inode(b"socket:[]"), None);
        assert_eq!(socket_inode(b"pipe:[12345]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
        assert_eq!(socket_inode(b"socket:[12a]"), None);
    }

    #[test]
    fn this_process_is_found_holding_its_own_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        // The inode, the independent way: fstat on the descriptor.
        let inode = rustix::fs::fstat(&listener).expect("fstat").st_ino;
        let owners = scan(Path::new("/proc"), &HashSet::from([inode]));
        assert!(owners.proc_listed);
        let me = std::process::id();
        assert_eq!(owners.by_inode.get(&inode), Some(&vec![me]));
        let process = &owners.processes[&me];
        assert_eq!(process.uid, Some(rustix::process::geteuid().as_raw()));
        assert!(!process.command.is_empty());
    }

    #[test]
    fn a_missing_proc_is_reported_not_fatal() {
        let owners = scan(Path::new("/nonexistent-proc"), &HashSet::from([1]));
        assert!(!owners.proc_listed);
        assert!(owners.by_inode.is_empty());
    }
}
