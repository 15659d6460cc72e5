//! One module per command: flags, the library call, the report.

pub mod acl;
pub mod addr;
pub mod audio;
pub mod bert;
pub mod bfd;
pub mod doctor;
pub mod eth_lb;
pub mod exporter;
pub mod framed;
pub mod listeners;
pub mod martians;
pub mod meta;
pub mod niu;
pub mod pattern;
pub mod perf;
pub mod ping;
pub mod port;
pub mod reflect;
pub mod stamp;
