//! A network namespace of a thread's own, for tests that must see only their own traffic.

use std::io;

use nix::sched::{CloneFlags, unshare};

use crate::netlink::RouteSocket;
use crate::packet::interface_index;

/// Moves the calling thread into a new network namespace and brings its loopback interface up
/// through rtnetlink (as `ip link set lo up`): a loopback on which no other process sends. The
/// rest of the process stays where it was; sockets the thread opens afterwards are in the new
/// namespace. Needs CAP_SYS_ADMIN (root).
pub fn enter_new_network_namespace() -> io::Result<()> {
    unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    let lo = interface_index("lo")?;
    RouteSocket::open()
        .and_then(|mut socket| socket.set_link_up(lo))
        .map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In the new namespace `lo` is up: netlink reports it so, and a datagram to itself over
    /// 127.0.0.1 and ::1 comes back (on a `lo` left down, sending fails).
    #[test]
    fn the_new_namespace_has_lo_up() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipping: network namespaces need root");
            return;
        }
        std::thread::spawn(|| {
            enter_new_network_namespace().expect("new namespace");
            let interfaces = RouteSocket::open().unwrap().interfaces().unwrap();
            let names: Vec<&str> = interfaces.iter().map(|i| i.name.as_str()).collect();
            assert!(names.contains(&"lo"), "{names:?}");
            let lo = interfaces.iter().find(|i| i.name == "lo").unwrap();
            assert!(lo.up && lo.loopback, "{lo:?}");
            for address in ["127.0.0.1:0", "[::1]:0"] {
                let socket = std::net::UdpSocket::bind(address).expect("bind on lo");
                socket.connect(socket.local_addr().unwrap()).unwrap();
                socket.send(b"up").expect("send over lo");
                let mut buffer = [0u8; 2];
                socket
                    .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                    .unwrap();
                assert_eq!(socket.recv(&mut buffer).expect("lo delivers"), 2);
            }
        })
        .join()
        .expect("namespace thread");
    }
}
