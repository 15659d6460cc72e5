//! This host's loopback health: netlink and /proc inspection and the doctor checks (whose round
//! trips run `loopscope-measure`'s engines).

#![forbid(unsafe_code)]
// Not every public item is documented yet (docs/design.md lists the crates still to do);
// delete this line once `cargo clippy` passes without it.
#![allow(missing_docs)]

pub mod doctor;
pub mod environment;
pub mod firewall;
pub mod proc_net;
pub mod resolver;
pub mod sysctl;
