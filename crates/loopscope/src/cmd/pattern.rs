use loopscope_report::Outcome;

use crate::Context;

#[derive(clap::Subcommand, Debug)]
pub enum PatternCommand {}

pub fn run(command: PatternCommand, _context: &Context) -> anyhow::Result<Outcome> {
    match command {}
}
