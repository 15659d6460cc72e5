use loopscope_report::Outcome;

use crate::Context;

pub fn run(args: &super::ping::Args, _context: &Context) -> anyhow::Result<Outcome> {
    anyhow::bail!(
        "ping over '{}' is not available in this build yet",
        args.endpoint
    )
}
