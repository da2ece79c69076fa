//! A spool file: which task to run, with what arguments, when.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use crate::leaf::yaml::{self, Value};
use crate::model::config::Task;
use crate::model::config::accept::{self, Refusal};
use crate::model::config::checker::Checker;

const KEYS: &[&str] = &["task", "id", "args", "env", "data", "run_at", "delay"];

/// The longest `id`, in characters.
pub const MAX_ID_CHARS: usize = 128;

/// A valid request from a spool file. Whether its task accepts it is `check`'s to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub task: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Whether the file carries `data` (for the child alone: jobd never reads it).
    pub has_data: bool,
    pub when: When,
    /// The writer's own name for the request, for logs and the result.
    pub id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Now,
    At(DateTime<Utc>),
    /// After the file arrived in `new/`.
    Delay(Duration),
}

impl Request {
    /// Whether `task` accepts what the request asks for, in the words jobd and
    /// `jobctl submit` both use.
    pub fn check(&self, task: &Task) -> Result<(), Refusal> {
        task.accept.check_args(&task.name, &self.args)?;
        task.accept
            .check_env(&task.name, self.env.keys(), &task.run.env)?;
        task.accept.check_data(&task.name, self.has_data)
    }

    /// When a file that arrived at `arrived` is due: its `run_at`, its `delay` after
    /// it arrived, or its arrival.
    pub fn due(&self, arrived: DateTime<Utc>) -> DateTime<Utc> {
        match self.when {
            When::Now => arrived,
            When::At(at) => at,
            When::Delay(delay) => {
                arrived + chrono::TimeDelta::from_std(delay).unwrap_or(chrono::TimeDelta::MAX)
            }
        }
    }
}

/// The most values the YAML parser builds for one spool file: parsed inside the loop,
/// a file must cost little whatever it holds (`data` in a JSON file is not built).
pub const MAX_VALUES: usize = 10_000;

/// Parse a spool file's text. The error is one line naming the first problem and where.
pub fn parse(text: &str) -> Result<Request, String> {
    let text = without_data(text);
    let root = yaml::parse_within(&text, MAX_VALUES).map_err(|err| match err.pos {
        Some(pos) => format!("line {}, column {}: {}", pos.line, pos.column, err.message),
        None => err.message,
    })?;
    let mut check = Checker::default();
    let request = read(&mut check, &root);
    match (request, check.problems.first()) {
        (Some(request), None) => Ok(request),
        (_, Some(problem)) => Err(match problem.pos {
            Some(pos) => format!("line {}, column {}: {}", pos.line, pos.column, problem.kind),
            None => problem.kind.to_string(),
        }),
        (None, None) => Err("not a spool request".to_string()),
    }
}

/// A JSON file's text with its `data` value replaced by `0` (and the line breaks it
/// held, so that the lines in messages stay true): jobd never reads `data`, and a
/// large one must cost only the check that it is JSON, not a tree of located values.
/// Anything else is left to the YAML parser as it is.
fn without_data(text: &str) -> Cow<'_, str> {
    if !text.trim_start().starts_with('{') {
        return Cow::Borrowed(text);
    }
    let Ok(fields) = serde_json::from_str::<std::collections::HashMap<String, &RawValue>>(text)
    else {
        return Cow::Borrowed(text);
    };
    let Some(data) = fields.get("data") else {
        return Cow::Borrowed(text);
    };
    let raw = data.get();
    let start = raw.as_ptr() as usize - text.as_ptr() as usize;
    let Some(end) = start
        .checked_add(raw.len())
        .filter(|end| *end <= text.len())
    else {
        return Cow::Borrowed(text);
    };
    let mut blank = String::with_capacity(text.len() - raw.len() + 1);
    blank.push_str(&text[..start]);
    blank.push('0');
    blank.extend(raw.chars().filter(|c| *c == '\n'));
    blank.push_str(&text[end..]);
    Cow::Owned(blank)
}

fn read(check: &mut Checker, root: &yaml::Node) -> Option<Request> {
    if !matches!(root.value, Value::Map(_)) {
        check.wrong_type(root, "the spool file", "a mapping with at least `task:`");
        return None;
    }
    let fields = check.fields(root, "the spool file", KEYS)?;
    let Some(task_node) = fields.get("task") else {
        if !fields.misspelt("task") {
            check.bad(root, "the spool file", "`task:` is missing");
        }
        return None;
    };
    let task = check.text(task_node, "task")?;
    if !crate::model::config::valid_name(&task) {
        check.bad(
            task_node,
            "task",
            format!("`{}` is not a task name", task.escape_debug()),
        );
        return None;
    }
    let args = match fields.get("args") {
        Some(node) => check.string_list(node, "args")?,
        None => Vec::new(),
    };
    if let Some(node) = fields.get("args")
        && args.iter().any(|arg| arg.contains('\0'))
    {
        check.bad(node, "args", "an argument contains a NUL character");
        return None;
    }
    let env = match fields.get("env") {
        Some(node) => {
            let env = check.env(node, "env")?;
            if let Some(name) = env.keys().find(|name| accept::forbidden(name)) {
                check.bad(node, "env", accept::forbidden_message(name));
                return None;
            }
            env
        }
        None => BTreeMap::new(),
    };
    let when = match (fields.get("run_at"), fields.get("delay")) {
        (Some(node), Some(_)) => {
            check.bad(
                node,
                "the spool file",
                "has both `run_at:` and `delay:`; give one",
            );
            return None;
        }
        (Some(node), None) => {
            let text = check.text(node, "run_at")?;
            match DateTime::parse_from_rfc3339(&text) {
                Ok(at) => When::At(at.to_utc()),
                Err(_) => {
                    check.bad(
                        node,
                        "run_at",
                        format!(
                            "`{}` is not an RFC 3339 time like 2026-11-27T18:00:00Z",
                            text.escape_debug()
                        ),
                    );
                    return None;
                }
            }
        }
        (None, Some(node)) => When::Delay(delay(check, node)?),
        (None, None) => When::Now,
    };
    let id = match fields.get("id") {
        Some(node) => {
            let id = check.text(node, "id")?;
            if let Some(problem) = id_problem(&id) {
                check.bad(node, "id", problem);
                return None;
            }
            Some(id)
        }
        None => None,
    };
    Some(Request {
        task,
        args,
        env,
        has_data: fields.get("data").is_some(),
        when,
        id,
    })
}

/// `delay:` is a duration (`90s`) or a number of seconds (`90`, `1.5`).
fn delay(check: &mut Checker, node: &yaml::Node) -> Option<Duration> {
    let seconds = match node.value {
        Value::Int(n) => n as f64,
        Value::Float(n) => n,
        _ => return check.duration(node, "delay"),
    };
    match Duration::try_from_secs_f64(seconds) {
        Ok(delay) if chrono::TimeDelta::from_std(delay).is_ok() => Some(delay),
        _ => {
            check.bad(
                node,
                "delay",
                format!("{seconds} is not a number of seconds from 0 to about 292 billion years"),
            );
            None
        }
    }
}

/// Why `id` cannot name a request: it travels into file names, logs and `jobctl spool`.
pub fn id_problem(id: &str) -> Option<String> {
    let count = id.chars().count();
    if count == 0 || count > MAX_ID_CHARS {
        return Some(format!(
            "an id has 1 to {MAX_ID_CHARS} characters; this one has {count}"
        ));
    }
    if id.starts_with(['.', '-']) {
        return Some(format!(
            "`{}` starts with `{}`; an id may not",
            id.escape_debug(),
            &id[..1]
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!(
            "`{}` holds `{}`; an id is made of letters, digits, `.`, `_` and `-`",
            id.escape_debug(),
            c.escape_debug()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_requests() {
        let json = parse(
            r#"{"task": "long_report", "args": ["--month", "2026-10"], "env": {"LANG": "C"},
               "run_at": "2026-11-27T18:00:00Z", "id": "report-42"}"#,
        )
        .unwrap();
        assert_eq!(json.task, "long_report");
        assert_eq!(json.args, ["--month", "2026-10"]);
        assert_eq!(json.env["LANG"], "C");
        assert_eq!(
            json.when,
            When::At(
                DateTime::parse_from_rfc3339("2026-11-27T18:00:00Z")
                    .unwrap()
                    .to_utc()
            )
        );
        assert_eq!(json.id.as_deref(), Some("report-42"));

        assert!(!json.has_data);

        let yaml = parse("task: t\nargs: [a b, \"$(rm -rf /)\", 5]\ndelay: 90s\n").unwrap();
        assert_eq!(yaml.args, ["a b", "$(rm -rf /)", "5"]);
        assert_eq!(yaml.when, When::Delay(Duration::from_secs(90)));
        assert_eq!(parse("task: t").unwrap().when, When::Now);
    }

    #[test]
    fn bad_requests_say_why_and_where() {
        for (text, words) in [
            ("", "expected a mapping"),
            ("[1, 2]", "expected a mapping"),
            ("args: [x]", "`task:` is missing"),
            ("tsak: t", "did you mean `task`?"),
            ("task: t\nprogram: /bin/sh", "unknown key `program`"),
            ("task: t\nargs: x", "expected a list"),
            ("task: t\nrun_at: tomorrow", "RFC 3339"),
            ("task: t\ndelay: -5", "not a number of seconds"),
            ("task: t\nid: -x", "starts with `-`"),
            ("task: t\nid: a/b", "holds `/`"),
            ("task: t\nenv: {HOME: /tmp}", "`HOME` may not be set"),
            ("task: t\nrun_at: 2026-11-27T18:00:00Z\ndelay: 5s", "both"),
            (
                "task: t\nenv: {LD_PRELOAD: /tmp/x.so}",
                "`LD_PRELOAD` may not be set",
            ),
            ("task: t\nenv: {PATH: /tmp}", "`PATH` may not be set"),
            ("task: t\nenv: {PYTHONPATH: /tmp}", "may not be set"),
            ("task: [t]", "expected a string"),
            ("{\"task\": \"t\",", "line 1"),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains(words), "{text:?}: {err}");
        }
        assert!(
            parse("task: t\n\nargs: x")
                .unwrap_err()
                .starts_with("line 3, column 7:")
        );
    }

    #[test]
    fn data_is_checked_as_json_and_never_built_into_a_tree() {
        let big = format!("[{}1]", "{\"a\": [1, 2, {\"b\": null}]}, ".repeat(40_000));
        let text = format!("{{\"task\": \"t\", \"data\": {big},\n \"delay\": 1.5}}");
        let started = std::time::Instant::now();
        let request = parse(&text).unwrap();
        assert!(request.has_data);
        assert_eq!(request.when, When::Delay(Duration::from_millis(1500)));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // The same values in YAML are counted, and refused past the bound.
        let yaml = format!("task: t\ndata: {big}\n");
        assert!(parse(&yaml).unwrap_err().contains("more than 10000 values"));
        // Lines in messages stay true after a multi-line `data`.
        let err = parse("{\"task\": \"t\", \"data\": [1,\n2,\n3],\n\"args\": 5}").unwrap_err();
        assert!(err.starts_with("line 4,"), "{err}");
        assert_eq!(
            parse("{\"task\": \"t\", \"delay\": 90}").unwrap().when,
            When::Delay(Duration::from_secs(90))
        );
    }
}
