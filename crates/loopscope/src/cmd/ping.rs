//! `loopscope ping LINK`: ICMP echo for `icmp://ADDR`, stamped frames over any other link.

use std::time::Duration;

use loopscope_report::Outcome;

use crate::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The link: icmp://127.0.0.1, icmp://[::1], udp://127.0.0.1:7007, tcp://..., serial:..., pty:
    pub endpoint: String,
    /// Stop after this many requests (default: until Ctrl-C).
    #[arg(short = 'c', long)]
    pub count: Option<u64>,
    /// Time between requests, e.g. 1s, 200ms, 0 (as fast as replies come back).
    #[arg(short = 'i', long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Payload size in bytes.
    #[arg(short = 's', long, default_value_t = 56)]
    pub size: usize,
    /// How long to wait for each reply before counting it lost.
    #[arg(short = 'W', long, default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Stop after this long in all.
    #[arg(short = 'w', long, value_parser = parse_duration)]
    pub deadline: Option<Duration>,
    /// ENDPOINT is an audio link (audiosim:, jack:): carry the frames over it with a Bell 202
    /// FSK modem (1200 bit/s).
    #[arg(long)]
    pub modem: bool,
    /// Print only the summary.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// ICMP only: auto (a datagram socket where net.ipv4.ping_group_range allows it, else
    /// raw), raw or dgram. Default: $LOOPSCOPE_ICMP_SOCKET, else auto.
    #[arg(long, value_name = "KIND")]
    pub socket: Option<String>,
}

pub fn run(args: Args, context: &Context) -> anyhow::Result<Outcome> {
    // `ping 127.0.0.1`, typed as to ping(8): over ICMP is the only thing it can mean.
    if let Err(loopscope_link::EndpointError::BareHost { text, url_host }) =
        loopscope_link::Endpoint::parse(&args.endpoint)
    {
        anyhow::bail!("'{text}' names a host, not a link: did you mean icmp://{url_host}?");
    }
    if args.endpoint.to_ascii_lowercase().starts_with("icmp:") {
        super::ping_icmp::run(&args, context)
    } else if args.socket.is_some() {
        anyhow::bail!("--socket applies to icmp:// only")
    } else {
        super::ping_link::run(&args, context)
    }
}

pub use loopscope_report::units::parse_duration;
