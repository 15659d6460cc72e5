//! The tests that drive a link: [`bert`] (bit integrity with O.150 patterns, G.821 figures) and
//! [`ping`] (round-trip time), [`perf`] (throughput and request-response latency, also against
//! stock iperf3). Each runs over any [`loopscope_link::Link`].

#![forbid(unsafe_code)]

pub mod audio_latency;
pub mod bert;
mod ending;
pub mod eth_lb;
pub mod framed;
pub mod ping;
// Not every public item of these is documented yet (docs/design.md says where this stands);
// each loses its allow once `cargo clippy` passes without it.
pub mod bfd;
pub mod perf;
pub mod stamp;
