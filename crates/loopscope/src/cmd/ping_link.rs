//! `loopscope ping LINK` for every link but icmp://: stamped frames, replies matched by sequence.

use anyhow::Context as _;
use loopscope_measure::ping::{self, HEADER, MAX_PAYLOAD, PingConfig, TRAILER};
use loopscope_report::{Format, Outcome, Printer};

use crate::Context;

pub fn run(args: &super::ping::Args, context: &Context) -> anyhow::Result<Outcome> {
    if args.size > MAX_PAYLOAD {
        anyhow::bail!("--size {} is too large (at most {MAX_PAYLOAD})", args.size);
    }
    let link = if args.modem {
        loopscope_link::adapter::modem::open(&args.endpoint)
    } else {
        loopscope_link::open(&args.endpoint)
    }
    .with_context(|| format!("cannot ping over '{}'", args.endpoint))?;
    let config = PingConfig {
        count: args.count,
        interval: args.interval,
        payload: args.size,
        timeout: args.timeout,
        deadline: args.deadline,
    };
    let mut printer = Printer::stdout(context.format);
    if context.format == Format::Human && !args.quiet {
        loopscope_report::stdout_line!(
            "PING {} {}({}) bytes of data.",
            args.endpoint,
            args.size,
            args.size + HEADER + TRAILER
        )?;
    }
    let quiet = args.quiet;
    let outcome = ping::run(link, &config, &context.stop, &mut |reply| {
        if !quiet {
            let _ = printer.emit(reply);
        }
    })
    .with_context(|| format!("cannot ping over '{}'", args.endpoint))?;
    printer.emit(&outcome.summary)?;
    if let Some(error) = &outcome.link_error {
        loopscope_report::stderr_line!("loopscope: the link failed mid-run: {error}");
    }
    Ok(Outcome::from_passed(outcome.summary.passed))
}
