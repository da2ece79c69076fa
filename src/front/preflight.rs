//! `jobd check`'s look beyond the jobfile itself: what a valid jobfile asks of this
//! host that the host cannot give (a program or a workdir that does not exist, a user
//! or group it does not know), and what is valid but rarely meant. A jobfile with
//! warnings still loads; `--strict` makes them errors, for deploy scripts.

use std::cell::OnceCell;
use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::leaf::account;
use crate::leaf::yaml::{self, Node, Pos, Value};
use crate::model::config::{Command, Config, Hook, RunSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The job or task cannot run as written on this host.
    Warning,
    /// Valid, and sometimes meant, but more often a slip.
    Note,
}

/// One finding, at the place in the jobfile the user would change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub pos: Pos,
    pub level: Level,
    /// The key it is about, as in the jobfile's errors: `jobs.send_mail.command`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Warning => "warning",
            Level::Note => "note",
        };
        write!(f, "{}: {level}: {}: {}", self.pos, self.path, self.message)
    }
}

/// What the host cannot give the enabled jobs and the tasks of `config`, whose text is
/// `text`, in file order; each place is reported once even when many jobs share it
/// (a `defaults:` workdir).
pub fn findings(config: &Config, text: &str) -> Vec<Finding> {
    // Parsed again only to place a finding: most jobfiles have none.
    let tree = Tree {
        text,
        tree: OnceCell::new(),
    };
    let mut found = BTreeSet::new();
    let mut lookups = Lookups {
        own_path: std::env::var_os("PATH").unwrap_or_default(),
        in_path: HashMap::new(),
    };
    for job in config.jobs.iter().filter(|job| job.enabled) {
        let place = Place {
            tree: &tree,
            section: "jobs",
            name: &job.name,
            fallback: job.pos,
        };
        check_run(&place, &job.run, &mut lookups, &mut found);
        check_hook(
            &place,
            job.on_failure.as_ref(),
            &job.run,
            &mut lookups,
            &mut found,
        );
        if let Some((expr, _)) = job.schedule.cron_source() {
            every_second(&place, expr, &mut found);
        }
    }
    for runtime in &config.runtimes {
        let place = Place {
            tree: &tree,
            section: "runtimes",
            name: &runtime.name,
            fallback: runtime.pos,
        };
        // The server's command, as a job's would be started.
        let server = RunSpec {
            command: Command::Argv(runtime.command.clone()),
            workdir: runtime.workdir.clone(),
            env: runtime.env.clone(),
            timeout: None,
            kill_grace: std::time::Duration::ZERO,
            user: runtime.user.clone(),
            group: runtime.group.clone(),
            runtime: None,
        };
        check_run(&place, &server, &mut lookups, &mut found);
    }
    for task in &config.tasks {
        let place = Place {
            tree: &tree,
            section: "tasks",
            name: &task.name,
            fallback: task.pos,
        };
        check_run(&place, &task.run, &mut lookups, &mut found);
        check_hook(
            &place,
            task.on_failure.as_ref(),
            &task.run,
            &mut lookups,
            &mut found,
        );
    }
    found.into_iter().collect()
}

/// PATH lookups, made once per program and PATH: a jobfile may hold 10,000 jobs that
/// run the same few programs.
struct Lookups {
    /// `jobd check`'s own PATH, which a job without `env: PATH` gets from jobd.
    own_path: OsString,
    in_path: HashMap<(OsString, String), bool>,
}

/// The jobfile's YAML tree, parsed when first needed.
struct Tree<'a> {
    text: &'a str,
    tree: OnceCell<Node>,
}

impl Tree<'_> {
    fn get(&self) -> &Node {
        self.tree.get_or_init(|| {
            yaml::parse(self.text).unwrap_or(Node {
                value: Value::Null,
                pos: Pos::default(),
            })
        })
    }
}

/// Where a job's or task's settings are written: its own key, else `defaults:`.
struct Place<'a> {
    tree: &'a Tree<'a>,
    section: &'static str,
    name: &'a str,
    /// The job's or task's name, for what neither it nor `defaults:` set.
    fallback: Pos,
}

impl Place<'_> {
    /// Where `key` (a path below the job, like `on_failure.command`) is written, and
    /// its dotted path: under the job if the job sets the key's first part, else under
    /// `defaults:`; as deep as the key goes there (`on_failure: [x]` has no
    /// `command`). A command list is placed at its program.
    fn of(&self, key: &[&str]) -> (Pos, String) {
        let own = [self.section, self.name];
        for base in [&own[..], &["defaults"][..]] {
            let Some(mut node) =
                find(self.tree.get(), base).and_then(|owner| find(owner, &key[..1]))
            else {
                continue;
            };
            let mut path: Vec<&str> = base.iter().chain(&key[..1]).copied().collect();
            for part in &key[1..] {
                let Some(below) = find(node, &[*part]) else {
                    break;
                };
                node = below;
                path.push(part);
            }
            let pos = match &node.value {
                Value::Seq(items) if !items.is_empty() => items[0].pos,
                _ => node.pos,
            };
            return (pos, path.join("."));
        }
        (self.fallback, format!("{}.{}", self.section, self.name))
    }

    fn report(&self, found: &mut BTreeSet<Finding>, level: Level, key: &[&str], message: String) {
        let (pos, path) = self.of(key);
        found.insert(Finding {
            pos,
            level,
            path,
            message,
        });
    }
}

/// The node at `keys` below `node`, through mappings.
fn find<'a>(node: &'a Node, keys: &[&str]) -> Option<&'a Node> {
    let Some((first, rest)) = keys.split_first() else {
        return Some(node);
    };
    let Value::Map(entries) = &node.value else {
        return None;
    };
    let (_, value) = entries
        .iter()
        .find(|(key, _)| matches!(&key.value, Value::Str(k) if k == first))?;
    find(value, rest)
}

fn check_run(place: &Place, run: &RunSpec, lookups: &mut Lookups, found: &mut BTreeSet<Finding>) {
    let workdir_ok = run.workdir.is_dir();
    if !workdir_ok {
        let what = if run.workdir.exists() {
            "is not a folder"
        } else {
            "does not exist"
        };
        place.report(
            found,
            Level::Warning,
            &["workdir"],
            format!("the workdir {} {what}", run.workdir.display()),
        );
    }
    let problem = match (&run.runtime, &run.command) {
        // What a runtime's server runs: a script or `-m MODULE`, not a program.
        (Some(_), Command::Argv(argv)) => missing_script(argv, run, workdir_ok),
        _ => missing_program(&run.command, run, workdir_ok, lookups),
    };
    if let Some(problem) = problem {
        place.report(found, Level::Warning, &["command"], problem);
    }
    if let Some(user) = &run.user
        && account::user(user).is_none()
    {
        place.report(
            found,
            Level::Warning,
            &["user"],
            format!("there is no user `{user}` on this host"),
        );
    }
    if let Some(group) = &run.group
        && account::gid(group).is_none()
    {
        place.report(
            found,
            Level::Warning,
            &["group"],
            format!("there is no group `{group}` on this host"),
        );
    }
}

/// A hook runs with its job's workdir, env and user: only its program can be missing.
fn check_hook(
    place: &Place,
    hook: Option<&Hook>,
    run: &RunSpec,
    lookups: &mut Lookups,
    found: &mut BTreeSet<Finding>,
) {
    let Some(hook) = hook else { return };
    if let Some(problem) = missing_program(&hook.command, run, run.workdir.is_dir(), lookups) {
        place.report(found, Level::Warning, &["on_failure", "command"], problem);
    }
}

/// Why the program of `command` cannot be started, if it cannot: a path (relative ones
/// from the workdir, as jobd runs them) that is missing or not executable, or a bare
/// name that is not in PATH. A shell command is checked only when it starts with a
/// plain path: anything else is for the shell to decide.
fn missing_program(
    command: &Command,
    run: &RunSpec,
    workdir_ok: bool,
    lookups: &mut Lookups,
) -> Option<String> {
    let program = match command {
        Command::Argv(argv) => argv[0].as_str(),
        Command::Shell(line) => {
            let first = line.split_whitespace().next()?;
            let plain = first
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./+@%,:".contains(&b));
            if !first.contains('/') || !plain {
                return None;
            }
            first
        }
    };
    if program.contains('/') {
        // As jobd runs it, without the `./` that `join` would keep.
        let path: PathBuf = run.workdir.join(program).components().collect();
        if Path::new(program).is_relative() && !workdir_ok {
            // The missing workdir is the problem to fix first.
            return None;
        }
        return match std::fs::metadata(&path) {
            Err(_) => Some(format!(
                "the program `{program}` does not exist ({})",
                path.display()
            )),
            Ok(meta) if meta.is_dir() => Some(format!(
                "the program `{program}` is a folder ({})",
                path.display()
            )),
            Ok(meta) if meta.permissions().mode() & 0o111 == 0 => Some(format!(
                "the program `{program}` is not executable ({})",
                path.display()
            )),
            Ok(_) => None,
        };
    }
    // The PATH the job gets: its own `env: PATH`, else jobd's.
    let search = run
        .env
        .get("PATH")
        .map(OsString::from)
        .unwrap_or_else(|| lookups.own_path.clone());
    let found = *lookups
        .in_path
        .entry((search.clone(), program.to_string()))
        .or_insert_with(|| {
            std::env::split_paths(&search)
                .map(|dir| dir.join(program))
                .any(|candidate| is_executable(&candidate))
        });
    (!found).then(|| {
        format!(
            "the program `{program}` is not in PATH ({})",
            search.to_string_lossy()
        )
    })
}

/// Why the script a runtime's server would run for `argv` is missing, if it is: a
/// path relative to the workdir (`manage.py`); `-m MODULE` is for the server to find.
fn missing_script(argv: &[String], run: &RunSpec, workdir_ok: bool) -> Option<String> {
    let script = argv[0].as_str();
    if script == "-m" || (Path::new(script).is_relative() && !workdir_ok) {
        return None;
    }
    let path: PathBuf = run.workdir.join(script).components().collect();
    (!path.is_file()).then(|| {
        format!(
            "the script `{script}` that the runtime runs does not exist ({})",
            path.display()
        )
    })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `* * * * * *`: six fields whose seconds field is `*` fire every second of each
/// minute they match, the usual slip when a seconds field is added to a cron line.
fn every_second(place: &Place, expr: &str, found: &mut BTreeSet<Finding>) {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 6 || !matches!(fields[0], "*" | "*/1") {
        return;
    }
    let meant = format!("0 {}", fields[1..].join(" "));
    let message = if fields[1..].iter().all(|f| *f == "*") {
        format!(
            "`{expr}` fires every second (with 6 fields the first is the second); \
             for once a minute write `{meant}`"
        )
    } else {
        format!(
            "`{expr}` fires every second of each minute it matches (with 6 fields the \
             first is the second); for once in those minutes write `{meant}`"
        )
    };
    place.report(found, Level::Note, &["schedule"], message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::{self, Host};

    fn check(text: &str) -> Vec<String> {
        let host = Host {
            local_zone: Some("UTC".into()),
            ..Host::default()
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/plain"), "").unwrap();
        let file = dir.path().join("jobd.yaml");
        let config = config::parse(text, &file, Some("production"), &host).unwrap();
        findings(&config, text)
            .iter()
            .map(|f| {
                f.to_string()
                    .replace(&dir.path().display().to_string(), "DIR")
            })
            .collect()
    }

    #[test]
    fn programs_workdirs_users_and_groups_the_host_lacks_are_found_where_written() {
        let found = check(
            "defaults:\n  workdir: nowhere\njobs:\n  a:\n    every: 1s\n    command: [sh]\n  \
             b:\n    every: 1s\n    command: [./run]\n    workdir: bin\n    user: no-such-user-here\n  \
             c:\n    every: 1s\n    command: [sh, -c, 'true']\n    workdir: bin\n    \
             on_failure: {command: [bin/alert]}\n  d:\n    every: 1s\n    command: [plain]\n    \
             workdir: bin\n    env: {PATH: /nonexistent}\n    group: no-such-group-here\n  \
             e:\n    every: 1s\n    command: [./plain]\n    workdir: bin\n  \
             f:\n    every: 1s\n    command: [missing]\n    workdir: bin\n    environments: [staging]\n",
        );
        assert_eq!(
            found,
            [
                "2:12: warning: defaults.workdir: the workdir DIR/nowhere does not exist",
                "9:15: warning: jobs.b.command: the program `./run` does not exist (DIR/bin/run)",
                "11:11: warning: jobs.b.user: there is no user `no-such-user-here` on this host",
                "16:28: warning: jobs.c.on_failure.command: the program `bin/alert` does not exist \
                 (DIR/bin/bin/alert)",
                "19:15: warning: jobs.d.command: the program `plain` is not in PATH (/nonexistent)",
                "22:12: warning: jobs.d.group: there is no group `no-such-group-here` on this host",
                "25:15: warning: jobs.e.command: the program `./plain` is not executable \
                 (DIR/bin/plain)",
            ]
        );
    }

    #[test]
    fn a_runtime_is_checked_as_a_program_and_its_jobs_scripts_as_files() {
        let found = check(
            "runtimes:\n  py:\n    command: [./no-python, -m, jobd.warm]\n    workdir: bin\n\
             jobs:\n  a:\n    every: 1s\n    runtime: py\n    command: [bin/plain, x]\n  \
             b:\n    every: 1s\n    runtime: py\n    command: [missing.py]\n  \
             c:\n    every: 1s\n    runtime: py\n    command: [-m, anything]\n",
        );
        assert_eq!(
            found,
            [
                "3:15: warning: runtimes.py.command: the program `./no-python` does not exist \
                 (DIR/bin/no-python)",
                "13:15: warning: jobs.b.command: the script `missing.py` that the runtime runs \
                 does not exist (DIR/missing.py)",
            ]
        );
    }

    #[test]
    fn a_seconds_field_of_star_earns_a_note() {
        let found = check(
            "jobs:\n  a:\n    schedule: '* * * * * *'\n    command: [sh]\n  \
             b:\n    schedule: '* 0 3 * * *'\n    command: [sh]\n  \
             c:\n    schedule: '*/5 * * * * *'\n    command: [sh]\n",
        );
        assert_eq!(
            found,
            [
                "3:15: note: jobs.a.schedule: `* * * * * *` fires every second (with 6 fields \
                 the first is the second); for once a minute write `0 * * * * *`",
                "6:15: note: jobs.b.schedule: `* 0 3 * * *` fires every second of each minute \
                 it matches (with 6 fields the first is the second); for once in those minutes \
                 write `0 0 3 * * *`",
            ]
        );
    }
}
