//! What each command line does, between parsing and the exit code.

use std::process::ExitCode;

use chrono::{DateTime, LocalResult, TimeZone, Utc};
use chrono_tz::Tz;

use crate::adapter::control::answer;
use crate::adapter::control::client::{self, ClientError};
use crate::adapter::control::protocol::{Body, Command, ReloadAnswer, RunAnswer, Status};
use crate::adapter::control::reach;
use crate::daemon::Daemon;
use crate::front::cli::{At, CheckArgs, JobctlArgs, JobctlCommand, JobfileArgs, SpoolArgs};
use crate::front::render::{self, Style};
use crate::front::submit::{Asks, Start};
use crate::front::{check, preflight};
use crate::leaf::{visible, words};
use crate::machine::spool::layout::Layout;
use crate::machine::spool::listing;
use crate::model::config::{self, Host};
use crate::model::record::Stream;
use std::io::IsTerminal;
use std::time::Duration;

/// `jobd check`: exit 0 and print fire times if the jobfile is valid, else exit 1 and
/// print every problem. Warnings about this host are printed either way, and fail the
/// check only with `--strict`.
pub fn check(jobfile: &JobfileArgs, args: &CheckArgs) -> ExitCode {
    let host = Host::from_env();
    let loaded = config::read(&jobfile.file.config).and_then(|(file, text)| {
        config::parse(&text, &file, jobfile.environment.as_deref(), &host)
            .map(|config| (config, text))
    });
    let (config, text) = match loaded {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let findings = preflight::findings(&config, &text);
    for finding in &findings {
        eprintln!("{}:{finding}", config.file.display());
    }
    // The control socket's groups: whether they exist and can reach the socket.
    let reach = reach::warnings(&config);
    for warning in &reach {
        eprintln!("{}: warning: {warning}", config.file.display());
    }
    let cluster = crate::front::cluster::warnings(&config);
    for warning in &cluster {
        eprintln!("{}: warning: {warning}", config.file.display());
    }
    let warnings = findings
        .iter()
        .filter(|f| f.level == preflight::Level::Warning)
        .count()
        + reach.len()
        + cluster.len();
    if args.strict && warnings > 0 {
        eprintln!(
            "{}: {} (--strict makes warnings errors)",
            config.file.display(),
            words::count(warnings, "warning")
        );
        return ExitCode::FAILURE;
    }
    let from = args.from.map_or_else(Utc::now, |t| t.to_utc());
    print!("{}", check::fire_times(&config, from, args.next));
    eprintln!("{}", check::summary(&config, warnings));
    ExitCode::SUCCESS
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

/// A line a run wrote, streamed by jobd: on jobctl's stdout or stderr as the run wrote
/// it, control characters shown escaped.
fn print_streamed(body: Body) {
    match body {
        Body::Line(line) => match line.stream {
            Stream::Stdout => println!("{}", visible::escape(&line.text)),
            Stream::Stderr => eprintln!("{}", visible::escape(&line.text)),
        },
        Body::Dropped { lines } => {
            eprintln!(
                "jobctl: {} not shown: jobctl read too slowly",
                words::count(lines, "line")
            )
        }
        _ => {}
    }
}

/// `jobctl logs --follow`: the last lines, then each new one as jobd writes it, until
/// jobd stops or jobctl is interrupted.
fn follow_logs(
    socket: &std::path::Path,
    command: Command,
    args: &JobctlArgs,
    style: &Style,
) -> ExitCode {
    let mut connection = match client::Connection::open(socket, command, None) {
        Ok(connection) => connection,
        Err(err) => return fail(Err(err), args),
    };
    loop {
        match connection.receive() {
            Ok(Some(Body::Logs { lines })) => print!("{}", render::logs(&lines, style)),
            Ok(Some(Body::Line(line))) => print!("{}", render::logs(&[line], style)),
            Ok(Some(Body::Error { message })) => {
                eprintln!("jobctl: {}", visible::escape_lines(&message));
                return ExitCode::from(FAILED);
            }
            Ok(Some(other)) => print_streamed(other),
            Ok(None) => return ExitCode::SUCCESS,
            Err(err) => return fail(Err(err), args),
        }
    }
}

/// `jobctl logs` while jobd is down: what the state directory holds (a run id is
/// looked up in the history).
fn offline_logs(
    state_dir: &std::path::Path,
    target: Option<&str>,
    lines: usize,
) -> Result<Vec<crate::model::record::LogLine>, String> {
    use crate::adapter::logs;
    let history = crate::adapter::state::load(state_dir);
    let Some(target) = target else {
        let mut all: Vec<_> = history
            .recent(None, 20)
            .into_iter()
            .map(|run| run.job)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .flat_map(|job| logs::last(state_dir, &job, None, lines))
            .collect();
        all.sort_by(|a, b| a.at.cmp(&b.at));
        let skip = all.len().saturating_sub(lines);
        return Ok(all.split_off(skip));
    };
    if let Some(job) = history.job_of(target) {
        return Ok(logs::last(state_dir, job, Some(target), lines));
    }
    Ok(logs::last(state_dir, target, None, lines))
}

/// jobctl's exit codes (SPEC: 0 success, 1 the request failed, 2 usage, 3 not running).
const FAILED: u8 = 1;
const USAGE: u8 = 2;
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
        Err(err) if unreadable(err) => {
            eprintln!("jobctl: {err}");
            eprintln!("jobctl: {WHICH_JOBFILE}");
            Err(ExitCode::from(USAGE))
        }
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
    // Status checks its own answer; submit and completions do not talk to jobd.
    if let Some(wanted) = args.jobfile.environment.as_deref()
        && !matches!(
            args.command,
            JobctlCommand::Status { .. } | JobctlCommand::Submit(_) | JobctlCommand::Completions(_)
        )
        && let Ok(Body::Status(status)) = call(Command::Status, quick)
        && let Err(code) = same_environment(wanted, &status)
    {
        return code;
    }
    match &args.command {
        JobctlCommand::Completions(which) => completions::<JobctlArgs>(which.shell),
        JobctlCommand::Status { json } => match call(Command::Status, quick) {
            Ok(Body::Status(status)) => {
                if let Some(Err(code)) = args
                    .jobfile
                    .environment
                    .as_deref()
                    .map(|wanted| same_environment(wanted, &status))
                {
                    return code;
                }
                print_status(&status, *json, &style, ExitCode::SUCCESS)
            }
            Err(err @ ClientError::NotRunning { .. }) => {
                if let Some(code) = guessed_socket(args, &err) {
                    return code;
                }
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
            other => fail(other, args),
        },
        JobctlCommand::History { job, count, json } => {
            let command = Command::History {
                job: job.clone(),
                limit: *count,
            };
            let (runs, code) = match call(command, quick) {
                Ok(Body::History { runs }) => (runs, ExitCode::SUCCESS),
                Err(err @ ClientError::NotRunning { .. }) => {
                    if let Some(code) = guessed_socket(args, &err) {
                        return code;
                    }
                    eprintln!("jobctl: {err}");
                    let history = crate::adapter::state::load(&places.state_dir);
                    (
                        history.recent(job.as_deref(), *count),
                        ExitCode::from(NOT_RUNNING),
                    )
                }
                other => return fail(other, args),
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
            let answer = client::call_streaming(
                &socket,
                command,
                if *wait { None } else { quick },
                print_streamed,
            );
            match answer {
                Ok(Body::Run(RunAnswer {
                    ended: Some(run), ..
                })) => {
                    let shown = |text: &str| visible::escape(text).into_owned();
                    println!(
                        "{}[{}]: {}",
                        shown(&run.job),
                        shown(&run.run_id),
                        shown(&run.message)
                    );
                    ExitCode::from(run.shell_status().clamp(0, 255) as u8)
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
                other => fail(other, args),
            }
        }
        JobctlCommand::Logs {
            target,
            lines,
            follow,
        } => {
            let command = Command::Logs {
                target: target.clone(),
                lines: *lines,
                follow: *follow,
            };
            if *follow {
                return follow_logs(&socket, command, args, &style);
            }
            match call(command, quick) {
                Ok(Body::Logs { lines }) => {
                    print!("{}", render::logs(&lines, &style));
                    ExitCode::SUCCESS
                }
                Err(err @ ClientError::NotRunning { .. }) => {
                    if let Some(code) = guessed_socket(args, &err) {
                        return code;
                    }
                    eprintln!("jobctl: {err}");
                    match offline_logs(&places.state_dir, target.as_deref(), *lines) {
                        Ok(lines) => {
                            print!("{}", render::logs(&lines, &style));
                            ExitCode::from(NOT_RUNNING)
                        }
                        Err(message) => {
                            eprintln!("jobctl: {message}");
                            ExitCode::from(FAILED)
                        }
                    }
                }
                other => fail(other, args),
            }
        }
        JobctlCommand::Reload { dry_run } => {
            match call(Command::Reload { dry_run: *dry_run }, quick) {
                Ok(Body::Reload(answer)) => {
                    if let Some(error) = &answer.error {
                        eprintln!("{}", visible::escape_lines(error));
                        return ExitCode::from(FAILED);
                    }
                    println!(
                        "{}: {}",
                        if *dry_run {
                            "jobfile is valid"
                        } else {
                            "reloaded"
                        },
                        reload_counts(&answer, *dry_run)
                    );
                    for (what, names) in [
                        ("added", &answer.added),
                        ("removed", &answer.removed),
                        ("changed", &answer.changed),
                    ] {
                        for name in names {
                            println!("  {what}: {}", visible::escape(name));
                        }
                    }
                    ExitCode::SUCCESS
                }
                other => fail(other, args),
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
                other => fail(other, args),
            }
        }
        JobctlCommand::Spool(args) => match valid() {
            Ok(config) => spool(config, args, &style),
            Err(code) => code,
        },
        JobctlCommand::Submit(submit) => {
            let config = match valid() {
                Ok(config) => config,
                Err(code) => return code,
            };
            let start = match (submit.at, submit.delay) {
                (Some(at), _) => match instant(at, config.timezone) {
                    Ok(at) => {
                        if at <= Utc::now() {
                            eprintln!(
                                "jobctl: --at {} is in the past: the task runs now",
                                check::rfc3339(at, config)
                            );
                        }
                        Start::At(at)
                    }
                    Err(message) => {
                        eprintln!("jobctl: --at: {message}");
                        return ExitCode::from(USAGE);
                    }
                },
                (None, Some(delay)) => Start::In(delay),
                (None, None) => Start::Now,
            };
            let asks = Asks {
                env: submit.env.clone(),
                args: submit.args.clone(),
                data: submit.data.clone(),
            };
            if config.cluster.is_some() && !submit.spool {
                return match crate::front::cluster::submit(config, &submit.task, start, &asks) {
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
            match crate::front::submit::submit(config, &submit.task, start, &asks) {
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

/// `1 was added, 0 removed, 2 changed`, or that nothing was.
fn reload_counts(answer: &ReloadAnswer, dry_run: bool) -> String {
    let (added, removed, changed) = (
        answer.added.len(),
        answer.removed.len(),
        answer.changed.len(),
    );
    match (dry_run, added + removed + changed) {
        (true, 0) => "nothing would be added, removed or changed".to_string(),
        (false, 0) => "nothing was added, removed or changed".to_string(),
        (true, _) => format!("{added} would be added, {removed} removed, {changed} changed"),
        (false, _) => format!(
            "{added} {} added, {removed} removed, {changed} changed",
            if added == 1 { "was" } else { "were" }
        ),
    }
}

/// `jobctl spool [NAME] [--json]`: the spool's files by state, from its folders.
fn spool(config: &config::Config, args: &SpoolArgs, style: &Style) -> ExitCode {
    let layout = Layout::new(&config.spool.dir);
    if !layout.new.is_dir() {
        eprintln!(
            "jobctl: there is no spool at {} (jobd has not run with this jobfile yet)",
            layout.root.display()
        );
        return ExitCode::from(FAILED);
    }
    let entries = match listing::list(&layout, style.now, args.name.as_deref()) {
        Ok(entries) => entries,
        Err((dir, error)) => {
            eprintln!(
                "jobctl: cannot read {}: {error} (root, jobd's user and the members of \
                 spool.group may)",
                dir.display()
            );
            return ExitCode::from(FAILED);
        }
    };
    if let Some(name) = &args.name
        && entries.is_empty()
    {
        eprintln!(
            "jobctl: no file named or with the id `{}` in {}",
            name.escape_debug(),
            layout.root.display()
        );
        return ExitCode::from(FAILED);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&entries).expect("entries serialize")
        );
    } else {
        print!("{}", render::spool(&entries, args.name.is_some(), style));
    }
    ExitCode::SUCCESS
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
fn fail(answer: Result<Body, ClientError>, args: &JobctlArgs) -> ExitCode {
    match answer {
        Err(err @ ClientError::NotRunning { .. }) => {
            if let Some(code) = guessed_socket(args, &err) {
                return code;
            }
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

/// `--at` as an instant: a time without an offset is read in the jobfile's zone, as
/// its schedules are; one the clocks skip or show twice there needs the offset.
fn instant(at: At, zone: Tz) -> Result<DateTime<Utc>, String> {
    let local = match at {
        At::Instant(at) => return Ok(at.to_utc()),
        At::Local(local) => local,
    };
    match zone.from_local_datetime(&local) {
        LocalResult::Single(at) => Ok(at.to_utc()),
        LocalResult::Ambiguous(first, second) => Err(format!(
            "{local} occurs twice in {zone} (the clocks go back): add the offset, {} or {}",
            first.format("%:z"),
            second.format("%:z")
        )),
        LocalResult::None => Err(format!(
            "{local} does not exist in {zone} (the clocks skip it): give a time after the change"
        )),
    }
}

const WHICH_JOBFILE: &str = "run jobctl in the folder of jobd.yaml, or name the jobfile \
                             with -c PATH or JOBD_CONFIG=PATH, or jobd's socket with --socket PATH";

/// Whether the jobfile itself could not be read (missing, unreadable, not a file).
fn unreadable(err: &config::ConfigError) -> bool {
    err.problems
        .iter()
        .any(|p| matches!(p.kind, config::ProblemKind::Unreadable(_)))
}

/// Nobody answered on the socket. When no `--socket` was given and the jobfile cannot
/// be read, that socket was only the default beside a jobfile that is not there: the
/// likely mistake is the folder jobctl runs in, not a stopped jobd, so say what was
/// tried and exit 2 (usage), not 3 (not running), which scripts act on.
fn guessed_socket(args: &JobctlArgs, err: &ClientError) -> Option<ExitCode> {
    if args.socket.is_some() {
        return None;
    }
    let Err(unread) = config::read(&args.jobfile.file.config) else {
        return None;
    };
    let ClientError::NotRunning { socket, reason } = err else {
        return None;
    };
    eprintln!("jobctl: {unread}");
    eprintln!(
        "jobctl: without it the control socket is a guess, and nothing answers there ({}: {reason})",
        socket.display()
    );
    eprintln!("jobctl: {WHICH_JOBFILE}");
    Some(ExitCode::from(USAGE))
}

/// A running jobd keeps the environment it was started with: `-e NAME` naming another
/// one means the user thinks jobd runs jobs it does not run. Refuse, and say which.
fn same_environment(wanted: &str, status: &Status) -> Result<(), ExitCode> {
    let Some(daemon) = &status.daemon else {
        return Ok(());
    };
    if daemon.environment.as_deref() == Some(wanted) {
        return Ok(());
    }
    let running = match &daemon.environment {
        Some(name) => format!("environment {name} (started with -e {name})"),
        None => "no environment (started without -e)".to_string(),
    };
    eprintln!(
        "jobctl: -e {wanted}: the running jobd (pid {}) runs in {running}",
        daemon.pid
    );
    eprintln!(
        "jobctl: -e chooses the environment only when jobd starts: leave it out (or unset \
         JOBD_ENVIRONMENT), or restart jobd with -e {wanted}"
    );
    Err(ExitCode::from(USAGE))
}
