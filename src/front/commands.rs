//! What each command line does, between parsing and the exit code.

use std::process::ExitCode;

use chrono::Utc;

use crate::adapter::control::answer;
use crate::adapter::control::client::{self, ClientError};
use crate::adapter::control::protocol::{Body, Command, RunAnswer, Status};
use crate::daemon::Daemon;
use crate::front::check;
use crate::front::cli::{CheckArgs, JobctlArgs, JobctlCommand, JobfileArgs};
use crate::front::render::{self, Style};
use crate::front::submit::Start;
use crate::model::config::{self, Host};
use std::io::IsTerminal;
use std::time::Duration;

/// `jobd check`: exit 0 and print fire times if the jobfile is valid, else exit 1 and
/// print every problem.
pub fn check(jobfile: &JobfileArgs, args: &CheckArgs) -> ExitCode {
    let host = Host::from_env();
    match config::load(&jobfile.file.config, jobfile.environment.as_deref(), &host) {
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

/// `jobd migrate`: bring the cluster's schema up to date, and say what was done.
pub fn migrate(jobfile: &JobfileArgs) -> ExitCode {
    let host = Host::from_env();
    let config = match config::load(&jobfile.file.config, jobfile.environment.as_deref(), &host) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    match crate::front::cluster::migrate(&config) {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("jobd migrate: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `jobd`: run the daemon in the foreground until SIGTERM or SIGINT.
pub fn run(jobfile: &JobfileArgs) -> ExitCode {
    crate::leaf::logging::init();
    let started = Daemon::start(
        jobfile.file.config.clone(),
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

/// `completions SHELL`: the completion script for the binary `Cli` describes.
pub fn completions<Cli: clap::CommandFactory>(shell: clap_complete::Shell) -> ExitCode {
    let mut command = Cli::command();
    let name = command.get_name().to_string();
    clap_complete::generate(shell, &mut command, name, &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// jobctl's exit codes (SPEC: 0 success, 1 the request failed, 2 usage, 3 not running).
const FAILED: u8 = 1;
const NOT_RUNNING: u8 = 3;

/// `jobctl`: parse, do, map to an exit code.
pub fn jobctl(args: &JobctlArgs) -> ExitCode {
    let host = Host::from_env();
    // Talking to jobd needs only the socket and the zone, read even from a jobfile with
    // errors (a bad deploy must not blind the operator) and without validating every
    // job. Submitting, and showing the status of a stopped jobd, need it all.
    let file = &args.jobfile.file.config;
    let places = config::places(file, &host);
    let loaded = std::cell::OnceCell::new();
    let valid = || match loaded
        .get_or_init(|| config::load(file, args.jobfile.environment.as_deref(), &host))
    {
        Ok(config) => Ok(config),
        Err(err) => {
            eprintln!("{err}");
            Err(ExitCode::from(FAILED))
        }
    };
    let socket = args.socket.clone().unwrap_or_else(|| places.socket.clone());
    let style = Style {
        zone: places.timezone,
        colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        now: Utc::now(),
    };
    let call = |command, timeout| client::call(&socket, command, timeout);
    let quick = Some(Duration::from_secs(30));
    match &args.command {
        JobctlCommand::Completions(which) => completions::<JobctlArgs>(which.shell),
        JobctlCommand::Status { json } => match call(Command::Status, quick) {
            Ok(Body::Status(status)) => print_status(&status, *json, &style, ExitCode::SUCCESS),
            Err(err @ ClientError::NotRunning { .. }) => {
                eprintln!("jobctl: {err}");
                match valid() {
                    Ok(config) => {
                        let status = answer::offline_status(config);
                        print_status(&status, *json, &style, ExitCode::from(NOT_RUNNING))
                    }
                    // No jobs to list from a broken jobfile: what the state directory
                    // holds is still worth seeing.
                    Err(_) => {
                        let runs = crate::adapter::state::load(&places.state_dir).recent(None, 20);
                        if *json {
                            println!(
                                "{}",
                                serde_json::to_string_pretty(&runs).expect("runs serialize")
                            );
                        } else {
                            println!("last runs, from {}:", places.state_dir.display());
                            print!("{}", render::history(&runs, &style));
                        }
                        ExitCode::from(NOT_RUNNING)
                    }
                }
            }
            other => fail(other),
        },
        JobctlCommand::History { job, count, json } => {
            let command = Command::History {
                job: job.clone(),
                limit: *count,
            };
            let (runs, code) = match call(command, quick) {
                Ok(Body::History { runs }) => (runs, ExitCode::SUCCESS),
                Err(err @ ClientError::NotRunning { .. }) => {
                    eprintln!("jobctl: {err}");
                    let history = crate::adapter::state::load(&places.state_dir);
                    (
                        history.recent(job.as_deref(), *count),
                        ExitCode::from(NOT_RUNNING),
                    )
                }
                other => return fail(other),
            };
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&runs).expect("runs serialize")
                );
            } else {
                print!("{}", render::history(&runs, &style));
            }
            code
        }
        JobctlCommand::Run { job, wait } => {
            let command = Command::Run {
                job: job.clone(),
                wait: *wait,
            };
            match call(command, if *wait { None } else { quick }) {
                Ok(Body::Run(RunAnswer {
                    ended: Some(run), ..
                })) => {
                    println!("{}[{}]: {}", run.job, run.run_id, run.message);
                    let code = match (run.exit_code, &run.signal) {
                        (Some(code), _) => code,
                        (None, Some(signal)) => 128 + signal_number(signal),
                        (None, None) => 1,
                    };
                    ExitCode::from(code.clamp(0, 255) as u8)
                }
                Ok(Body::Run(RunAnswer {
                    decision, run_id, ..
                })) => match (decision.as_str(), run_id) {
                    ("started", Some(id)) => {
                        println!("{job}[{id}]: started");
                        ExitCode::SUCCESS
                    }
                    (decision, _) => {
                        let why = match decision {
                            "skipped" => {
                                "not started: an instance is still running (on_overlap: skip)"
                            }
                            "queued" => {
                                "queued: it starts when the running instance ends (on_overlap: queue)"
                            }
                            _ => {
                                "the running instance is being stopped; it starts after (on_overlap: replace)"
                            }
                        };
                        println!("{job}: {why}");
                        if *wait || decision == "skipped" {
                            ExitCode::from(FAILED)
                        } else {
                            ExitCode::SUCCESS
                        }
                    }
                },
                other => fail(other),
            }
        }
        JobctlCommand::Reload { dry_run } => {
            match call(Command::Reload { dry_run: *dry_run }, quick) {
                Ok(Body::Reload(answer)) => {
                    if let Some(error) = &answer.error {
                        eprintln!("{error}");
                        return ExitCode::from(FAILED);
                    }
                    let verb = if *dry_run { "would be" } else { "were" };
                    println!(
                        "{}: {} {verb} added, {} removed, {} changed",
                        if *dry_run {
                            "jobfile is valid"
                        } else {
                            "reloaded"
                        },
                        answer.added.len(),
                        answer.removed.len(),
                        answer.changed.len()
                    );
                    for (what, names) in [
                        ("added", &answer.added),
                        ("removed", &answer.removed),
                        ("changed", &answer.changed),
                    ] {
                        for name in names {
                            println!("  {what}: {name}");
                        }
                    }
                    ExitCode::SUCCESS
                }
                other => fail(other),
            }
        }
        JobctlCommand::Next { job, count } => {
            let command = Command::Next {
                job: job.clone(),
                count: *count,
            };
            match call(command, quick) {
                Ok(Body::Next { instants }) => {
                    print!("{}", render::next(&instants, &style));
                    ExitCode::SUCCESS
                }
                other => fail(other),
            }
        }
        JobctlCommand::Submit(submit) => {
            let start = match (submit.at, submit.delay) {
                (Some(at), _) => Start::At(at.to_utc()),
                (None, Some(delay)) => Start::In(delay),
                (None, None) => Start::Now,
            };
            let config = match valid() {
                Ok(config) => config,
                Err(code) => return code,
            };
            if config.cluster.is_some() && !submit.spool {
                return match crate::front::cluster::submit(
                    config,
                    &submit.task,
                    start,
                    &submit.env,
                    &submit.args,
                ) {
                    Ok((id, row)) => {
                        println!("{id}");
                        eprintln!("submitted to the cluster as one-off {row}");
                        ExitCode::SUCCESS
                    }
                    Err(err) => {
                        eprintln!("jobctl: {err}");
                        ExitCode::from(FAILED)
                    }
                };
            }
            match crate::front::submit::submit(
                config,
                &submit.task,
                start,
                &submit.env,
                &submit.args,
            ) {
                Ok(name) => {
                    println!("{name}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("jobctl: {err}");
                    ExitCode::from(FAILED)
                }
            }
        }
    }
}

fn print_status(status: &Status, json: bool, style: &Style, code: ExitCode) -> ExitCode {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(status).expect("status serializes")
        );
    } else {
        print!("{}", render::status(status, style));
    }
    code
}

/// An answer that is an error, or not the kind asked for.
fn fail(answer: Result<Body, ClientError>) -> ExitCode {
    match answer {
        Err(err @ ClientError::NotRunning { .. }) => {
            eprintln!("jobctl: {err}");
            ExitCode::from(NOT_RUNNING)
        }
        Err(err) => {
            eprintln!("jobctl: {err}");
            ExitCode::from(FAILED)
        }
        Ok(body) => {
            eprintln!("jobctl: unexpected answer from jobd: {body:?}");
            ExitCode::from(FAILED)
        }
    }
}

fn signal_number(name: &str) -> i32 {
    name.parse::<nix::sys::signal::Signal>()
        .map_or(0, |s| s as i32)
}
