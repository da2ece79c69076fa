use std::process::ExitCode;

use clap::Parser;
use jobd::cli::JobctlArgs;

fn main() -> ExitCode {
    jobd::commands::jobctl(&JobctlArgs::parse())
}
