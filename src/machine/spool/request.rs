//! A spool file: which task to run, with what arguments, when.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::leaf::yaml::{self, Value};
use crate::model::config::checker::Checker;

const KEYS: &[&str] = &["task", "args", "env", "run_at", "delay", "id"];

/// Variables a spool file may not set: each would let the file choose the code that
/// runs (the loader, the PATH lookup, an interpreter's start-up) rather than only the
/// arguments of the task.
const FORBIDDEN_ENV: &[&str] = &[
    "PATH",
    "IFS",
    "ENV",
    "BASH_ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "GCONV_PATH",
    "HOSTALIASES",
    "NODE_OPTIONS",
    "NODE_PATH",
    "RUBYOPT",
    "RUBYLIB",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
];
const FORBIDDEN_ENV_PREFIXES: &[&str] = &["LD_", "PYTHON", "JOBD_", "BASH_FUNC_"];

/// A valid request from a spool file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub task: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
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

/// Parse a spool file's text. The error is one line naming the first problem and where.
pub fn parse(text: &str) -> Result<Request, String> {
    let root = yaml::parse(text).map_err(|err| match err.pos {
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
            if let Some(name) = env.keys().find(|name| forbidden(name)) {
                check.bad(
                    node,
                    "env",
                    format!("`{name}` may not be set by a spool file: it could change the program that runs"),
                );
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
                        format!("`{text}` is not an RFC 3339 time like 2026-11-27T18:00:00Z"),
                    );
                    return None;
                }
            }
        }
        (None, Some(node)) => When::Delay(check.duration(node, "delay")?),
        (None, None) => When::Now,
    };
    let id = match fields.get("id") {
        Some(node) => Some(check.text(node, "id")?),
        None => None,
    };
    Some(Request {
        task,
        args,
        env,
        when,
        id,
    })
}

fn forbidden(name: &str) -> bool {
    FORBIDDEN_ENV.contains(&name) || FORBIDDEN_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
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
            ("task: t\ndelay: 5", "no unit"),
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
}
