//! `loopscope exporter --config FILE`: flags to `loopscope_exporter`, SIGHUP to a reload.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use loopscope_exporter::{Config, DEFAULT_LISTEN, Exporter};
use loopscope_report::{Outcome, stderr_line};
use signal_hook::consts::SIGHUP;

use crate::Context;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Endpoints: /metrics (the scheduled targets, the exporter's own health), /probe?module=M&target=T \
(one probe now, in blackbox_exporter's metric names, so its scrape configs work unchanged).\n\
SIGHUP reloads the configuration: a file with an error is refused with its line and reason (one \
log line) and the running configuration stays; a good one adds and removes targets, and the \
targets it did not change keep their counters.\n\n\
Examples:\n  loopscope exporter --config loopscope.toml\n  \
loopscope exporter --config loopscope.toml --check\n  \
loopscope exporter --config deploy/loopscope.toml --listen 127.0.0.1:9469")]
pub struct Args {
    /// The configuration file (TOML): modules and targets. See deploy/loopscope.toml.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Address and port to serve on (default: the file's `listen`, else 127.0.0.1:9469).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Check the configuration and exit (0 when it is good, 2 with the line and reason).
    #[arg(long)]
    pub check: bool,
}

pub fn run(args: &Args, context: &Context) -> anyhow::Result<Outcome> {
    let config = Config::load(&args.config)?;
    if args.check {
        stderr_line!(
            "loopscope exporter: {} is good: {} modules, {} targets",
            args.config.display(),
            config.modules.len(),
            config.targets.len()
        );
        return Ok(Outcome::Passed);
    }
    let listen = args
        .listen
        .clone()
        .or_else(|| config.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let targets = config.targets.len();
    // SIGHUP reloads; registered before the exporter starts, so an early one is not lost.
    let mut hangups = signal_hook::iterator::Signals::new([SIGHUP])
        .context("cannot install the SIGHUP handler")?;
    let hangup_handle = hangups.handle();
    let exporter = Arc::new(Exporter::start(config, &listen, Arc::clone(&context.stop))?);
    stderr_line!(
        "loopscope exporter: listening on http://{} ({targets} targets)",
        exporter.address()
    );
    let reloader = {
        let exporter = Arc::clone(&exporter);
        let path = args.config.clone();
        std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || {
                for _ in hangups.forever() {
                    match Config::load(&path) {
                        Ok(config) => {
                            let summary = exporter.reload(config);
                            stderr_line!(
                                "loopscope exporter: reloaded {}: {} added, {} removed, {} changed, {} unchanged",
                                path.display(),
                                summary.added.len(),
                                summary.removed.len(),
                                summary.changed.len(),
                                summary.kept
                            );
                        }
                        Err(error) => {
                            exporter.reload_failed();
                            stderr_line!(
                                "loopscope exporter: reload refused, the running configuration stays: {error}"
                            );
                        }
                    }
                }
            })?
    };
    while !context.stop.load(Ordering::SeqCst) {
        std::thread::park_timeout(Duration::from_millis(200));
    }
    hangup_handle.close();
    let _ = reloader.join();
    if let Ok(exporter) = Arc::try_unwrap(exporter) {
        exporter.shutdown();
    }
    stderr_line!("loopscope exporter: stopped");
    Ok(Outcome::Passed)
}
