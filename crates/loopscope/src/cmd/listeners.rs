use loopscope_report::Outcome;

use crate::Context;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args, _context: &Context) -> anyhow::Result<Outcome> {
    anyhow::bail!("'loopscope listeners' is not available in this build yet")
}
