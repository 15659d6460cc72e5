//! Shell completions and the man page, generated from the clap definition.

use std::io;

use clap_complete::Shell;
use loopscope_report::Outcome;

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell
    pub shell: Shell,
}

pub fn completions(args: CompletionsArgs, command: &mut clap::Command) -> anyhow::Result<Outcome> {
    clap_complete::generate(args.shell, command, "loopscope", &mut io::stdout());
    Ok(Outcome::Passed)
}

pub fn man(command: &clap::Command) -> anyhow::Result<Outcome> {
    clap_mangen::Man::new(command.clone()).render(&mut io::stdout())?;
    Ok(Outcome::Passed)
}
