use std::process::ExitCode;

use clap::Parser;
use jobd::front::cli::{JobdArgs, JobdCommand};

fn main() -> ExitCode {
    let args = JobdArgs::parse();
    match &args.command {
        Some(JobdCommand::Check(check)) => jobd::front::commands::check(&args.jobfile, check),
        Some(JobdCommand::Migrate) => jobd::front::commands::migrate(&args.jobfile),
        Some(JobdCommand::Completions(which)) => {
            jobd::front::commands::completions::<JobdArgs>(which.shell)
        }
        None => jobd::front::commands::run(&args.jobfile),
    }
}
