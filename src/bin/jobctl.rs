use std::process::ExitCode;

use clap::Parser;
use jobd::front::cli::JobctlArgs;

fn main() -> ExitCode {
    jobd::front::commands::jobctl(&JobctlArgs::parse())
}
