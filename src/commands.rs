//! What each command line does, between parsing and the exit code.

use std::process::ExitCode;

use chrono::Utc;

use crate::check;
use crate::cli::{CheckArgs, JobctlArgs, JobctlCommand, JobfileArgs};
use crate::config::{self, Host};
use crate::daemon::Daemon;
use crate::submit::Start;

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

/// `jobctl`: parse, do, map to an exit code (0 done, 1 refused or failed).
pub fn jobctl(args: &JobctlArgs) -> ExitCode {
    let config = match config::load(&args.config, None, &Host::from_env()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    match &args.command {
        JobctlCommand::Submit(submit) => {
            let start = match (submit.at, submit.delay) {
                (Some(at), _) => Start::At(at.to_utc()),
                (None, Some(delay)) => Start::In(delay),
                (None, None) => Start::Now,
            };
            match crate::submit::submit(&config, &submit.task, start, &submit.env, &submit.args) {
                Ok(name) => {
                    println!("{name}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("jobctl: {err}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
