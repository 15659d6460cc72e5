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
    /// Print only the summary.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// ICMP only: auto (a datagram socket where net.ipv4.ping_group_range allows it, else
    /// raw), raw or dgram. Default: $LOOPSCOPE_ICMP_SOCKET, else auto.
    #[arg(long, value_name = "KIND")]
    pub socket: Option<String>,
}

pub fn run(args: Args, context: &Context) -> anyhow::Result<Outcome> {
    if args.endpoint.to_ascii_lowercase().starts_with("icmp:") {
        super::ping_icmp::run(&args, context)
    } else if args.socket.is_some() {
        anyhow::bail!("--socket applies to icmp:// only")
    } else {
        super::ping_link::run(&args, context)
    }
}

/// Durations as users write them: `1s`, `200ms`, `250us`, `2m`, `1h`, or bare seconds (`0.2`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (try 1s, 200ms, 2m)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "ns" => value / 1e9,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        _ => {
            return Err(format!(
                "'{text}': unknown unit '{unit}' (use ns, us, ms, s, m, h, d)"
            ));
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("'{text}' is not a non-negative duration"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 parsecs").is_err());
    }
}
