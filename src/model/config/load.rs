//! From the YAML tree to the validated model, collecting every problem on the way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;

use super::accept::{self, Accept, Pattern};
use super::checker::{Checker, Fields};
use super::error::{ConfigError, ProblemKind};
use super::places::Places;
use super::{
    CatchUp, Command, Config, DEFAULT_HOOK_REPEAT_AFTER, DEFAULT_HOOK_TIMEOUT, DEFAULT_KEEP_DONE,
    DEFAULT_KEEP_FAILED, DEFAULT_KEEP_FAILED_FOR, DEFAULT_KILL_GRACE, DEFAULT_MAX_QUEUED,
    DEFAULT_RETRY_DELAY, DEFAULT_SHUTDOWN_GRACE, DEFAULT_WORKERS, Hook, Host, Job, OnHostLoss,
    OnOverlap, Placement, RemovedJobs, Retention, RunSpec, Runtime, Spool, Task,
};
use crate::leaf::suggest;
use crate::leaf::yaml::{self, Node, Value};
use crate::model::schedule::Schedule;

const TOP_KEYS: &[&str] = &[
    "timezone",
    "shutdown_grace",
    "state_dir",
    "socket",
    "socket_group",
    "read_group",
    "defaults",
    "jobs",
    "spool",
    "tasks",
    "removed_jobs",
    "metrics_file",
    "runtimes",
    "cluster",
];
/// What `defaults:`, jobs and tasks share: how to start a process, and what to do
/// when it fails.
const RUN_KEYS: &[&str] = &[
    "workdir",
    "env",
    "timeout",
    "kill_grace",
    "user",
    "group",
    "on_failure",
];
const HOOK_KEYS: &[&str] = &["command", "timeout", "repeat_after"];
const JOB_KEYS: &[&str] = &[
    "schedule",
    "every",
    "offset",
    "command",
    "workdir",
    "env",
    "timeout",
    "kill_grace",
    "user",
    "group",
    "max_instances",
    "on_overlap",
    "environments",
    "catch_up",
    "on_failure",
    "alert_after",
    "runtime",
    "cluster",
    "on_host_loss",
];
const TASK_KEYS: &[&str] = &[
    "command",
    "workdir",
    "env",
    "timeout",
    "kill_grace",
    "user",
    "group",
    "retries",
    "retry_delay",
    "max_instances",
    "on_failure",
    "runtime",
    "accept",
];
pub(super) const CLUSTER_KEYS: &[&str] = &["database_url", "listen_url", "host_id", "lease"];
const RUNTIME_KEYS: &[&str] = &[
    "command", "workdir", "env", "preload", "user", "group", "max_runs", "max_rss",
];
/// What a task takes from a spool file: see `accept.rs`.
const ACCEPT_KEYS: &[&str] = &["args", "max_args", "env", "data"];
const SPOOL_KEYS: &[&str] = &[
    "dir",
    "workers",
    "group",
    "allow_users",
    "allow_groups",
    "max_queued",
    "keep_done",
    "keep_done_for",
    "keep_failed",
    "keep_failed_for",
];

/// The places a jobfile names, read as well as it can be even when the jobfile has
/// errors, so that `jobctl status` still finds a running jobd after a bad deploy.
pub fn places(text: &str, file: &Path, host: &Host) -> Places {
    let dir = file.parent().unwrap_or(Path::new("/"));
    // jobctl reads these before every command: skip the jobs when the three keys are
    // plainly readable, and read the file the thorough way only when they are not.
    if let Some(places) = super::places::scan(text, TOP_KEYS, dir, host) {
        return places;
    }
    places_thorough(text, dir, host)
}

/// `places` through the YAML parser.
pub(super) fn places_thorough(text: &str, dir: &Path, host: &Host) -> Places {
    let mut check = Checker::default();
    let root = yaml::parse(text).unwrap_or(Node {
        value: Value::Null,
        pos: Default::default(),
    });
    let empty = Node {
        value: Value::Null,
        pos: Default::default(),
    };
    let node = if matches!(root.value, Value::Map(_)) {
        &root
    } else {
        &empty
    };
    let top = check
        .fields(node, "the jobfile", TOP_KEYS)
        .expect("a mapping or nothing");
    check.places(&top, dir, host)
}

/// Parse and validate jobfile text. `file` is the jobfile's absolute path: relative
/// paths in it resolve against its folder.
pub fn parse(
    text: &str,
    file: &Path,
    environment: Option<&str>,
    host: &Host,
) -> Result<Config, ConfigError> {
    parse_reusing(text, file, environment, host, None)
}

/// `parse`, reusing the parsed schedules of `previous` (the running jobfile, on a
/// reload) where an expression and zone are unchanged.
pub fn parse_reusing(
    text: &str,
    file: &Path,
    environment: Option<&str>,
    host: &Host,
    previous: Option<&Config>,
) -> Result<Config, ConfigError> {
    let mut check = Checker::default();
    for job in previous.map(|c| c.jobs.as_slice()).unwrap_or_default() {
        if let Some((expr, zone)) = job.schedule.cron_source() {
            check
                .schedules
                .insert((expr.to_string(), zone), job.schedule.clone());
        }
    }
    let config = match yaml::parse(text) {
        Ok(root) => check.config(&root, file, environment, host),
        Err(err) => {
            check.report(err.pos, ProblemKind::Syntax(err.message));
            None
        }
    };
    // Checks run section by section; the user reads the file top to bottom.
    check
        .problems
        .sort_by_key(|p| p.pos.map(|pos| (pos.line, pos.column)));
    match config {
        Some(config) if check.problems.is_empty() => Ok(config),
        _ => Err(ConfigError {
            file: file.to_path_buf(),
            problems: check.problems,
        }),
    }
}

/// The settings of `defaults:`, or of one job or task, before merging.
#[derive(Default)]
struct RunParts {
    workdir: Option<PathBuf>,
    env: BTreeMap<String, String>,
    timeout: Option<Duration>,
    kill_grace: Option<Duration>,
    user: Option<String>,
    group: Option<String>,
    /// `Some(None)`: `on_failure: null`, turning off the hook of `defaults:`.
    on_failure: Option<Option<Hook>>,
}

impl Checker {
    fn config(
        &mut self,
        root: &Node,
        file: &Path,
        environment: Option<&str>,
        host: &Host,
    ) -> Option<Config> {
        let dir = file.parent().unwrap_or(Path::new("/"));
        if root.value == Value::Null {
            self.bad(
                root,
                "the jobfile",
                "it is empty; it needs at least `jobs:` or `tasks:`",
            );
            return None;
        }
        let top = self.fields(root, "the jobfile", TOP_KEYS)?;

        let Places {
            timezone,
            state_dir,
            socket,
        } = self.places(&top, dir, host);
        let shutdown_grace = top
            .get("shutdown_grace")
            .and_then(|n| self.duration(n, "shutdown_grace"))
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE);
        let socket_group = top
            .get("socket_group")
            .and_then(|node| self.name(node, "socket_group"));
        let read_group = top
            .get("read_group")
            .and_then(|node| self.name(node, "read_group"));
        let removed_jobs = top
            .get("removed_jobs")
            .and_then(|n| {
                self.choice(
                    n,
                    "removed_jobs",
                    &[("finish", RemovedJobs::Finish), ("stop", RemovedJobs::Stop)],
                )
            })
            .unwrap_or(RemovedJobs::Finish);
        let metrics_file = top
            .get("metrics_file")
            .and_then(|n| self.path(n, "metrics_file", dir));
        let defaults = match top.get("defaults") {
            Some(node) => self.run_parts(node, "defaults", RUN_KEYS, dir),
            None => RunParts::default(),
        };
        let spool = self.spool(top.get("spool"), &state_dir, dir);
        let runtimes: Vec<Runtime> = match top.get("runtimes") {
            Some(node) => self
                .named_entries(node, "runtimes")
                .into_iter()
                .filter_map(|(name, key, body)| self.runtime(name, key, body, &defaults, dir))
                .collect(),
            None => Vec::new(),
        };

        let cluster = top
            .get("cluster")
            .map(|node| self.cluster(node, root, host));

        let job_entries = match top.get("jobs") {
            Some(node) => self.named_entries(node, "jobs"),
            None => Vec::new(),
        };
        let task_entries = match top.get("tasks") {
            Some(node) => self.named_entries(node, "tasks"),
            None => Vec::new(),
        };
        for (name, key, _) in &task_entries {
            if let Some((_, job_key, _)) = job_entries.iter().find(|(job, _, _)| job == name) {
                self.report(
                    Some(key.pos),
                    ProblemKind::NameClash {
                        name: name.to_string(),
                        first: job_key.pos,
                    },
                );
            }
        }
        let jobs: Vec<Job> = job_entries
            .iter()
            .filter_map(|(name, key, body)| {
                let context = Context {
                    defaults: &defaults,
                    runtimes: &runtimes,
                    dir,
                };
                self.job(name, key, body, &context, timezone, environment)
            })
            .collect();
        let tasks: Vec<Task> = task_entries
            .iter()
            .filter_map(|(name, key, body)| {
                let context = Context {
                    defaults: &defaults,
                    runtimes: &runtimes,
                    dir,
                };
                self.task(name, key, body, &context)
            })
            .collect();

        let job_index = jobs
            .iter()
            .enumerate()
            .map(|(index, job)| (job.name.clone(), index))
            .collect();
        Some(Config {
            job_index,
            file: file.to_path_buf(),
            environment: environment.map(str::to_string),
            timezone,
            shutdown_grace,
            state_dir,
            socket,
            socket_group,
            read_group,
            jobs,
            spool: spool?,
            tasks,
            removed_jobs,
            metrics_file,
            runtimes,
            cluster: cluster.map_or(Some(None), |c| c.map(Some))?,
        })
    }

    /// The zone and the folders, which jobctl needs even from a jobfile with errors.
    fn places(&mut self, top: &Fields, dir: &Path, host: &Host) -> Places {
        let timezone = top
            .get("timezone")
            .map(|node| self.timezone(node).unwrap_or(Tz::UTC));
        let state_dir = top
            .get("state_dir")
            .map(|node| self.path(node, "state_dir", dir).unwrap_or_default());
        let socket = top
            .get("socket")
            .map(|node| self.path(node, "socket", dir).unwrap_or_default());
        super::places::resolve(timezone, state_dir, socket, dir, host)
    }

    /// The entries of `jobs:` or `tasks:`: a mapping from names to settings. A bad name
    /// is reported, and its settings are still checked.
    fn named_entries<'a>(
        &mut self,
        node: &'a Node,
        section: &str,
    ) -> Vec<(&'a str, &'a Node, &'a Node)> {
        let entries = match &node.value {
            Value::Map(entries) => entries,
            Value::Null => return Vec::new(),
            _ => {
                self.wrong_type(node, section, "a mapping from names to settings");
                return Vec::new();
            }
        };
        let mut named = Vec::with_capacity(entries.len());
        for (key, body) in entries {
            let Value::Str(name) = &key.value else {
                self.wrong_type(key, section, "a name");
                continue;
            };
            if name.ends_with(super::HOOK_SUFFIX) {
                self.bad(
                    key,
                    section,
                    format!(
                        "`{name}`: names ending in `{}` are those of failure hooks' runs",
                        super::HOOK_SUFFIX
                    ),
                );
            } else if !valid_name(name) {
                self.bad(
                    key,
                    section,
                    format!(
                        "`{name}` is not a valid name: use letters, digits, `_`, `-` and `.`, \
                         starting with a letter or digit, at most {MAX_NAME_LEN} characters"
                    ),
                );
            }
            named.push((name.as_str(), key, body));
        }
        named
    }

    fn job(
        &mut self,
        name: &str,
        key: &Node,
        body: &Node,
        context: &Context,
        timezone: Tz,
        environment: Option<&str>,
    ) -> Option<Job> {
        let Context { defaults, dir, .. } = *context;
        let path = format!("jobs.{name}");
        let fields = self.fields(body, &path, JOB_KEYS)?;
        let parts = self.run_parts_of(&fields, &path, dir);
        let command = self.required_command(&fields, &path, key);
        let runtime = self.runtime_of(&fields, &path, &parts, command.as_ref(), context);

        let schedule = match (fields.get("schedule"), fields.get("every")) {
            (Some(cron), Some(_)) => {
                self.bad(
                    cron,
                    &path,
                    "has both `schedule:` and `every:`; a job takes one or the other",
                );
                None
            }
            (Some(cron), None) => {
                if let Some(offset) = fields.get("offset") {
                    self.bad(
                        offset,
                        &path,
                        "`offset:` goes with `every:`, not `schedule:`",
                    );
                }
                self.cron(cron, &format!("{path}.schedule"), timezone)
            }
            (None, Some(every)) => self.every(every, fields.get("offset"), &path),
            (None, None) if fields.misspelt("schedule") || fields.misspelt("every") => None,
            (None, None) => {
                self.report(
                    Some(key.pos),
                    ProblemKind::BadValue {
                        path: path.clone(),
                        reason: "needs `schedule:` (a cron expression) or `every:` (an interval)"
                            .to_string(),
                    },
                );
                None
            }
        };
        let max_instances = fields
            .get("max_instances")
            .and_then(|n| self.count(n, &format!("{path}.max_instances"), 1))
            .unwrap_or(1);
        let on_overlap = fields
            .get("on_overlap")
            .and_then(|n| {
                self.choice(
                    n,
                    &format!("{path}.on_overlap"),
                    &[
                        ("skip", OnOverlap::Skip),
                        ("queue", OnOverlap::Queue),
                        ("replace", OnOverlap::Replace),
                    ],
                )
            })
            .unwrap_or(OnOverlap::Skip);
        let catch_up = fields
            .get("catch_up")
            .and_then(|n| {
                self.choice(
                    n,
                    &format!("{path}.catch_up"),
                    &[("none", CatchUp::None), ("once", CatchUp::Once)],
                )
            })
            .unwrap_or(CatchUp::None);
        let environments = match fields.get("environments") {
            Some(node) => {
                let list = self.string_list(node, &format!("{path}.environments"))?;
                if list.is_empty() {
                    self.bad(
                        node,
                        &path,
                        "`environments: []` would disable the job everywhere; \
                         list the environments it runs in, or remove the job",
                    );
                }
                Some(list)
            }
            None => None,
        };
        let enabled = match &environments {
            None => true,
            Some(list) => environment.is_some_and(|env| list.iter().any(|e| e == env)),
        };
        let alert_after = fields.get("alert_after").and_then(|n| {
            let after = self.duration(n, &format!("{path}.alert_after"))?;
            if after < Duration::from_secs(1) {
                self.bad(n, &format!("{path}.alert_after"), "must be at least 1s");
                return None;
            }
            Some(after)
        });
        let on_failure = hook(defaults, &parts);
        let placement = fields
            .get("cluster")
            .and_then(|n| self.placement(n, &format!("{path}.cluster")))
            .unwrap_or(Placement::Shared);
        let on_host_loss = fields
            .get("on_host_loss")
            .and_then(|n| self.on_host_loss(n, &format!("{path}.on_host_loss")))
            .unwrap_or(OnHostLoss::Lost);
        Some(Job {
            name: name.to_string(),
            schedule: schedule?,
            on_failure,
            alert_after,
            run: merge(defaults, parts, command?, runtime?, dir),
            max_instances,
            on_overlap,
            environments,
            enabled,
            catch_up,
            placement,
            on_host_loss,
            pos: key.pos,
        })
    }

    fn task(&mut self, name: &str, key: &Node, body: &Node, context: &Context) -> Option<Task> {
        let Context { defaults, dir, .. } = *context;
        let path = format!("tasks.{name}");
        let fields = self.fields(body, &path, TASK_KEYS)?;
        let parts = self.run_parts_of(&fields, &path, dir);
        let command = self.required_command(&fields, &path, key);
        let runtime = self.runtime_of(&fields, &path, &parts, command.as_ref(), context);
        let retries = fields
            .get("retries")
            .and_then(|n| self.count(n, &format!("{path}.retries"), 0))
            .unwrap_or(0);
        let retry_delay = fields
            .get("retry_delay")
            .and_then(|n| self.duration(n, &format!("{path}.retry_delay")))
            .unwrap_or(DEFAULT_RETRY_DELAY);
        let max_instances = fields
            .get("max_instances")
            .and_then(|n| self.count(n, &format!("{path}.max_instances"), 1));
        let on_failure = hook(defaults, &parts);
        let run = merge(defaults, parts, command?, runtime?, dir);
        let accept = match fields.get("accept") {
            Some(node) => self.accept(node, &format!("{path}.accept"), &run.env)?,
            None => Accept::nothing(),
        };
        Some(Task {
            name: name.to_string(),
            on_failure,
            run,
            retries,
            retry_delay,
            max_instances,
            accept,
            pos: key.pos,
        })
    }

    /// One entry of `runtimes:`.
    fn runtime(
        &mut self,
        name: &str,
        key: &Node,
        body: &Node,
        defaults: &RunParts,
        dir: &Path,
    ) -> Option<Runtime> {
        let path = format!("runtimes.{name}");
        let fields = self.fields(body, &path, RUNTIME_KEYS)?;
        let sub = |key: &str| format!("{path}.{key}");
        let command = match self.required_command(&fields, &path, key)? {
            Command::Argv(argv) => argv,
            Command::Shell(_) => {
                let node = fields.get("command").expect("a command was read");
                self.bad(
                    node,
                    &sub("command"),
                    "a runtime's command is a list (`[.venv/bin/python, -m, jobd.warm]`): \
                     its first word is also the interpreter cold runs fall back to",
                );
                return None;
            }
        };
        let preload = match fields.get("preload") {
            Some(node) => self.string_list(node, &sub("preload"))?,
            None => Vec::new(),
        };
        let mut env = defaults.env.clone();
        if let Some(own) = fields.get("env").and_then(|n| self.env(n, &sub("env"))) {
            env.extend(own);
        }
        let max_rss = match fields.get("max_rss") {
            Some(node) => Some(self.size(node, &sub("max_rss"))?),
            None => None,
        };
        Some(Runtime {
            name: name.to_string(),
            command,
            workdir: fields
                .get("workdir")
                .and_then(|n| self.path(n, &sub("workdir"), dir))
                .or_else(|| defaults.workdir.clone())
                .unwrap_or_else(|| dir.to_path_buf()),
            env,
            preload,
            user: fields
                .get("user")
                .and_then(|n| self.name(n, &sub("user")))
                .or_else(|| defaults.user.clone()),
            group: fields
                .get("group")
                .and_then(|n| self.name(n, &sub("group")))
                .or_else(|| defaults.group.clone()),
            max_runs: fields
                .get("max_runs")
                .and_then(|n| self.count(n, &sub("max_runs"), 1)),
            max_rss,
            pos: key.pos,
        })
    }

    /// The runtime a job or task names (`runtime:`), checked against what the job
    /// says: its command must be a list, and it runs as the runtime's user. `Some(None)`
    /// without `runtime:`; `None` after a problem.
    fn runtime_of<'a>(
        &mut self,
        fields: &Fields,
        path: &str,
        parts: &RunParts,
        command: Option<&Command>,
        context: &Context<'a>,
    ) -> Option<Option<&'a Runtime>> {
        let Some(node) = fields.get("runtime") else {
            return Some(None);
        };
        let name = self.name(node, &format!("{path}.runtime"))?;
        let Some(runtime) = context.runtimes.iter().find(|r| r.name == name) else {
            let known = context.runtimes.iter().map(|r| r.name.as_str());
            let reason = match suggest::closest(&name, known) {
                Some(near) => format!("there is no runtime `{name}`; did you mean `{near}`?"),
                None => format!("there is no runtime `{name}` in `runtimes:`"),
            };
            self.bad(node, &format!("{path}.runtime"), reason);
            return None;
        };
        if let Some(Command::Shell(_)) = command {
            self.bad(
                node,
                &format!("{path}.runtime"),
                "a job run by a runtime has a list as its command (`[manage.py, send_mail]`), \
                 not a shell line",
            );
            return None;
        }
        let user = parts.user.as_ref().or(context.defaults.user.as_ref());
        let group = parts.group.as_ref().or(context.defaults.group.as_ref());
        if user != runtime.user.as_ref() || group != runtime.group.as_ref() {
            self.bad(
                node,
                &format!("{path}.runtime"),
                format!(
                    "its runs are forks of the runtime's server, which runs as {}: \
                     give the job the same `user:` and `group:`, or none",
                    match (&runtime.user, &runtime.group) {
                        (Some(u), Some(g)) => format!("user `{u}`, group `{g}`"),
                        (Some(u), None) => format!("user `{u}`"),
                        (None, Some(g)) => format!("group `{g}`"),
                        (None, None) => "jobd's own user".to_string(),
                    }
                ),
            );
            return None;
        }
        Some(Some(runtime))
    }

    /// `accept:`: the patterns compile, and the variables are ones a spool file could
    /// ever set: not one the jobfile sets for the task (`env`, with `defaults.env`), not
    /// one of the fence, not jobd's own.
    fn accept(
        &mut self,
        node: &Node,
        path: &str,
        env: &BTreeMap<String, String>,
    ) -> Option<Accept> {
        let fields = self.fields(node, path, ACCEPT_KEYS)?;
        let mut accept = Accept::nothing();
        let mut valid = true;
        if let Some(list) = fields.get("args") {
            let sub = format!("{path}.args");
            match &list.value {
                Value::Seq(items) => {
                    for item in items {
                        let Some(source) = self.text(item, &sub) else {
                            valid = false;
                            continue;
                        };
                        match Pattern::new(&source) {
                            Ok(pattern) => accept.args.push(pattern),
                            Err(reason) => {
                                self.bad(
                                    item,
                                    &sub,
                                    format!(
                                        "`{}` is not a regular expression: {reason}",
                                        source.escape_debug()
                                    ),
                                );
                                valid = false;
                            }
                        }
                    }
                }
                _ => {
                    self.wrong_type(list, &sub, "a list of regular expressions");
                    valid = false;
                }
            }
        }
        if let Some(n) = fields.get("max_args") {
            match self.count(n, &format!("{path}.max_args"), 0) {
                Some(max) => accept.max_args = max,
                None => valid = false,
            }
        }
        if let Some(list) = fields.get("env") {
            let sub = format!("{path}.env");
            match &list.value {
                Value::Seq(items) => {
                    for item in items {
                        let Some(name) = self.text(item, &sub) else {
                            valid = false;
                            continue;
                        };
                        let problem = if !variable_name(&name) {
                            Some(format!(
                                "`{}` is not a variable name (letters, digits and `_`, not starting with a digit)",
                                name.escape_debug()
                            ))
                        } else if env.contains_key(&name) {
                            Some(format!(
                                "`{name}` is set by the jobfile for this task (its `env:` or \
                                 `defaults.env`), and the jobfile always wins: a spool file could \
                                 never change it; remove it from one of the two"
                            ))
                        } else if accept::forbidden(&name) {
                            Some(format!(
                                "`{name}` is in the fence of variables no spool file may set, \
                                 whatever its task accepts (it could change the program that runs; \
                                 see jobd(8)); pass the value as an argument or in `data` instead"
                            ))
                        } else if accept.env.contains(&name) {
                            Some(format!("`{name}` is listed twice"))
                        } else {
                            None
                        };
                        match problem {
                            Some(reason) => {
                                self.bad(item, &sub, reason);
                                valid = false;
                            }
                            None => accept.env.push(name),
                        }
                    }
                }
                _ => {
                    self.wrong_type(list, &sub, "a list of variable names");
                    valid = false;
                }
            }
        }
        if let Some(n) = fields.get("data") {
            match &n.value {
                Value::Bool(data) => accept.data = *data,
                _ => {
                    self.wrong_type(n, &format!("{path}.data"), "true or false");
                    valid = false;
                }
            }
        }
        valid.then_some(accept)
    }

    fn spool(&mut self, node: Option<&Node>, state_dir: &Path, dir: &Path) -> Option<Spool> {
        let mut spool = Spool {
            dir: state_dir.join("spool"),
            workers: DEFAULT_WORKERS,
            allow_users: Vec::new(),
            allow_groups: Vec::new(),
            keep_done: Retention {
                count: Some(DEFAULT_KEEP_DONE),
                age: None,
            },
            keep_failed: Retention {
                count: Some(DEFAULT_KEEP_FAILED),
                age: Some(DEFAULT_KEEP_FAILED_FOR),
            },
            group: None,
            max_queued: DEFAULT_MAX_QUEUED,
        };
        let Some(node) = node else {
            return Some(spool);
        };
        let fields = self.fields(node, "spool", SPOOL_KEYS)?;
        if let Some(node) = fields.get("dir") {
            spool.dir = self.path(node, "spool.dir", dir)?;
        }
        if let Some(node) = fields.get("workers") {
            spool.workers = self.count(node, "spool.workers", 1)?;
        }
        if let Some(node) = fields.get("group") {
            spool.group = Some(self.name(node, "spool.group")?);
        }
        if let Some(node) = fields.get("max_queued") {
            spool.max_queued = self.count(node, "spool.max_queued", 1)?;
        }
        if let Some(node) = fields.get("allow_users") {
            spool.allow_users = self.string_list(node, "spool.allow_users")?;
        }
        if let Some(node) = fields.get("allow_groups") {
            spool.allow_groups = self.string_list(node, "spool.allow_groups")?;
        }
        if let Some(node) = fields.get("keep_done") {
            spool.keep_done.count = Some(self.count(node, "spool.keep_done", 0)?);
        }
        if let Some(node) = fields.get("keep_done_for") {
            spool.keep_done.age = Some(self.duration(node, "spool.keep_done_for")?);
        }
        if let Some(node) = fields.get("keep_failed") {
            spool.keep_failed.count = Some(self.count(node, "spool.keep_failed", 0)?);
        }
        if let Some(node) = fields.get("keep_failed_for") {
            spool.keep_failed.age = Some(self.duration(node, "spool.keep_failed_for")?);
        }
        Some(spool)
    }

    fn run_parts(
        &mut self,
        node: &Node,
        path: &str,
        allowed: &'static [&'static str],
        dir: &Path,
    ) -> RunParts {
        match self.fields(node, path, allowed) {
            Some(fields) => self.run_parts_of(&fields, path, dir),
            None => RunParts::default(),
        }
    }

    fn run_parts_of(&mut self, fields: &Fields, path: &str, dir: &Path) -> RunParts {
        let sub = |key: &str| format!("{path}.{key}");
        RunParts {
            workdir: fields
                .get("workdir")
                .and_then(|n| self.path(n, &sub("workdir"), dir)),
            env: fields
                .get("env")
                .and_then(|n| self.env(n, &sub("env")))
                .unwrap_or_default(),
            timeout: fields.get("timeout").and_then(|n| {
                let timeout = self.duration(n, &sub("timeout"))?;
                if timeout.is_zero() {
                    self.bad(n, &sub("timeout"), "must be longer than 0s");
                    return None;
                }
                Some(timeout)
            }),
            kill_grace: fields
                .get("kill_grace")
                .and_then(|n| self.duration(n, &sub("kill_grace"))),
            user: fields.get("user").and_then(|n| self.name(n, &sub("user"))),
            group: fields
                .get("group")
                .and_then(|n| self.name(n, &sub("group"))),
            on_failure: fields
                .get("on_failure")
                .and_then(|n| self.hook(n, &sub("on_failure"))),
        }
    }

    /// `on_failure:` is a command, a mapping with `command:` and its limits, or null.
    fn hook(&mut self, node: &Node, path: &str) -> Option<Option<Hook>> {
        match &node.value {
            Value::Null => Some(None),
            Value::Map(_) => {
                let fields = self.fields(node, path, HOOK_KEYS)?;
                let command = match fields.get("command") {
                    Some(n) => self.command(n, &format!("{path}.command")),
                    None if fields.misspelt("command") => None,
                    None => {
                        self.report(
                            Some(node.pos),
                            ProblemKind::Missing {
                                path: path.to_string(),
                                key: "command",
                            },
                        );
                        None
                    }
                };
                let mut positive = |key: &str, default: Duration| match fields.get(key) {
                    None => Some(default),
                    Some(n) => {
                        let value = self.duration(n, &format!("{path}.{key}"))?;
                        if value.is_zero() && key == "timeout" {
                            self.bad(n, &format!("{path}.{key}"), "must be longer than 0s");
                            return None;
                        }
                        Some(value)
                    }
                };
                let timeout = positive("timeout", DEFAULT_HOOK_TIMEOUT);
                let repeat_after = positive("repeat_after", DEFAULT_HOOK_REPEAT_AFTER);
                Some(Some(Hook {
                    command: command?,
                    timeout: timeout?,
                    repeat_after: repeat_after?,
                }))
            }
            _ => Some(Some(Hook {
                command: self.command(node, path)?,
                timeout: DEFAULT_HOOK_TIMEOUT,
                repeat_after: DEFAULT_HOOK_REPEAT_AFTER,
            })),
        }
    }

    fn required_command(&mut self, fields: &Fields, path: &str, key: &Node) -> Option<Command> {
        match fields.get("command") {
            Some(node) => self.command(node, &format!("{path}.command")),
            None if fields.misspelt("command") => None,
            None => {
                self.report(
                    Some(key.pos),
                    ProblemKind::Missing {
                        path: path.to_string(),
                        key: "command",
                    },
                );
                None
            }
        }
    }

    fn command(&mut self, node: &Node, path: &str) -> Option<Command> {
        match &node.value {
            Value::Str(line) => {
                if line.trim().is_empty() {
                    self.bad(node, path, "the command is empty");
                    return None;
                }
                if line.contains('\0') {
                    self.bad(node, path, "the command contains a NUL character");
                    return None;
                }
                Some(Command::Shell(line.clone()))
            }
            Value::Seq(items) => {
                let mut argv = Vec::with_capacity(items.len());
                for item in items {
                    let arg = self.text(item, path)?;
                    if arg.contains('\0') {
                        self.bad(item, path, "an argument contains a NUL character");
                        return None;
                    }
                    argv.push(arg);
                }
                match argv.first() {
                    None => {
                        self.bad(node, path, "the command list is empty; name a program");
                        None
                    }
                    Some(program) if program.is_empty() => {
                        self.bad(&items[0], path, "the program name is empty");
                        None
                    }
                    Some(_) => Some(Command::Argv(argv)),
                }
            }
            _ => {
                self.wrong_type(
                    node,
                    path,
                    "a list (`[program, arg, ...]`, run directly) or a string (run by /bin/sh -c)",
                );
                None
            }
        }
    }

    fn cron(&mut self, node: &Node, path: &str, timezone: Tz) -> Option<Schedule> {
        let Value::Str(expr) = &node.value else {
            self.wrong_type(
                node,
                path,
                "a cron expression in quotes, like \"*/5 * * * *\"",
            );
            return None;
        };
        let key = (expr.trim().to_string(), timezone);
        if let Some(known) = self.schedules.get(&key) {
            return Some(known.clone());
        }
        match Schedule::cron(expr, timezone) {
            // A fixed reference keeps validation a function of the file alone; a pattern
            // with no match after it has none at all (the fields have no year).
            Ok(schedule) if schedule.next_after(chrono::DateTime::UNIX_EPOCH).is_none() => {
                self.bad(
                    node,
                    path,
                    format!("cron expression `{expr}` never fires: no date matches it"),
                );
                None
            }
            Ok(schedule) => {
                self.schedules.insert(key, schedule.clone());
                Some(schedule)
            }
            Err(err) => {
                self.bad(node, path, format!("bad cron expression `{expr}`: {err}"));
                None
            }
        }
    }

    fn every(&mut self, node: &Node, offset: Option<&Node>, path: &str) -> Option<Schedule> {
        let every_path = format!("{path}.every");
        let period = self.duration(node, &every_path)?;
        if period < Duration::from_millis(1) {
            self.bad(node, &every_path, "must be at least 1ms");
            return None;
        }
        let offset = match offset {
            Some(n) => self.duration(n, &format!("{path}.offset"))?,
            None => Duration::ZERO,
        };
        Some(Schedule::every(period, offset))
    }

    fn timezone(&mut self, node: &Node) -> Option<Tz> {
        let Value::Str(name) = &node.value else {
            self.wrong_type(
                node,
                "timezone",
                "an IANA time zone name like Europe/Amsterdam",
            );
            return None;
        };
        match name.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                let hint =
                    match suggest::closest(name, chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()))
                    {
                        Some(near) => format!("; did you mean `{near}`?"),
                        None => " (use an IANA name like Europe/Amsterdam or UTC)".to_string(),
                    };
                self.bad(
                    node,
                    "timezone",
                    format!("unknown time zone `{name}`{hint}"),
                );
                None
            }
        }
    }
}

const MAX_NAME_LEN: usize = 100;

/// Names end up in log prefixes, environment variables and file names: keep them to
/// characters that are safe in all three.
pub(crate) fn valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// A name a spool file may set: what a shell would take as a variable.
fn variable_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A job's or task's own `on_failure:` (or its explicit null) over that of `defaults:`.
fn hook(defaults: &RunParts, own: &RunParts) -> Option<Hook> {
    match &own.on_failure {
        Some(own) => own.clone(),
        None => defaults.on_failure.clone().flatten(),
    }
}

/// What jobs and tasks are read against.
#[derive(Clone, Copy)]
struct Context<'a> {
    defaults: &'a RunParts,
    runtimes: &'a [Runtime],
    dir: &'a Path,
}

/// A job's or task's own settings over `defaults:` (and its runtime's); `env` merges
/// key by key: `defaults.env`, the runtime's env, the job's own.
fn merge(
    defaults: &RunParts,
    own: RunParts,
    command: Command,
    runtime: Option<&Runtime>,
    dir: &Path,
) -> RunSpec {
    let mut env = match runtime {
        Some(runtime) => runtime.env.clone(),
        None => defaults.env.clone(),
    };
    env.extend(own.env);
    RunSpec {
        command,
        workdir: own
            .workdir
            .or_else(|| defaults.workdir.clone())
            .unwrap_or_else(|| dir.to_path_buf()),
        env,
        timeout: own.timeout.or(defaults.timeout),
        kill_grace: own
            .kill_grace
            .or(defaults.kill_grace)
            .unwrap_or(DEFAULT_KILL_GRACE),
        user: own.user.or_else(|| defaults.user.clone()),
        group: own.group.or_else(|| defaults.group.clone()),
        runtime: runtime.map(|r| r.name.clone()),
    }
}
