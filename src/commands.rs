//! What each command line does, between parsing and the exit code.

use std::process::ExitCode;

use chrono::Utc;

use crate::check;
use crate::cli::{CheckArgs, JobfileArgs};
use crate::config::{self, Host};
use crate::daemon::Daemon;

/// `jobd check`: exit 0 and print fire times if the jobfile is valid, else exit 1 and
/// print every problem.
pub fn check(jobfile: &JobfileArgs, args: &CheckArgs) -> ExitCode {
    let host = Host::from_env();
    match config::load(&jobfile.config, jobfile.environment.as_deref(), &host) {
        Ok(config) => {
            let from = args.from.map_or_else(Utc::now, |t| t.to_utc());
            print!("{}", check::fire_times(&config, from, args.next));
            eprintln!("{}", check::summary(&config));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}

/// `jobd`: run the daemon in the foreground until SIGTERM or SIGINT.
pub fn run(jobfile: &JobfileArgs) -> ExitCode {
    crate::logging::init();
    let started = Daemon::start(
        jobfile.config.clone(),
        jobfile.environment.clone(),
        Host::from_env(),
    );
    match started.and_then(Daemon::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log::error!("{err}");
            ExitCode::FAILURE
        }
    }
}
