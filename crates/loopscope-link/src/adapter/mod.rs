//! Adapters: links that wrap another link and are links themselves, in the manner of smoltcp's
//! `phy` wrappers (`FaultInjector`, `PcapWriter`).

pub mod impair;
pub mod modem;
