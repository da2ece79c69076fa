use std::process::ExitCode;

use clap::Parser;
use jobd::cli::{JobdArgs, JobdCommand};

fn main() -> ExitCode {
    let args = JobdArgs::parse();
    match &args.command {
        Some(JobdCommand::Check(check)) => jobd::commands::check(&args.jobfile, check),
        Some(JobdCommand::Completions(which)) => {
            jobd::commands::completions::<JobdArgs>(which.shell)
        }
        None => jobd::commands::run(&args.jobfile),
    }
}
