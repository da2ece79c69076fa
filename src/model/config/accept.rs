//! What a task accepts from a spool file (`accept:`), and the fence of variable names
//! no spool file may set whatever a task declares. The same rules, in the same words,
//! refuse a file in jobd, refuse a request in `jobctl submit`, and are written into
//! `spool/tasks.json` for other clients.

use std::collections::BTreeMap;
use std::fmt;

use regex::{Regex, RegexBuilder};

/// `accept.max_args` when a task does not say.
pub const DEFAULT_MAX_ARGS: u32 = 16;
/// The appended arguments together, in bytes: far below ARG_MAX, which the task's own
/// argv and the environment share.
pub const MAX_ARGS_BYTES: usize = 128 * 1024;

/// A compiled pattern stays far below the regex crate's own default limit: a jobfile
/// with a pathological pattern is refused by `jobd check`, not slow in the loop.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// What a task takes from a spool file beyond its name, an id and a time. The default
/// takes nothing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Accept {
    /// Each appended argument must wholly match one of these.
    pub args: Vec<Pattern>,
    pub max_args: u32,
    /// The variables a file may set.
    pub env: Vec<String>,
    /// Whether a file may carry `data`.
    pub data: bool,
}

/// A regular expression an argument must wholly match: anchored at both ends.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

impl Pattern {
    /// `source` as written in the jobfile, or why it is not a usable expression.
    pub fn new(source: &str) -> Result<Pattern, String> {
        let regex = RegexBuilder::new(&format!("^(?:{source})$"))
            .size_limit(PATTERN_SIZE_LIMIT)
            .build()
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => {
                    "the pattern is too large once compiled; make it simpler".to_string()
                }
                other => other.to_string(),
            })?;
        Ok(Pattern {
            source: source.to_string(),
            regex,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// An argument that starts with `-` is an option: only a pattern that itself starts
    /// with `-` may admit it, so that `.*` never lets a file choose the program's options.
    fn admits(&self, arg: &str) -> bool {
        (!arg.starts_with('-') || self.source.starts_with('-')) && self.regex.is_match(arg)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.source == other.source
    }
}

/// Why a request asks for more than its task accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    TooManyArgs {
        task: String,
        max: u32,
        given: usize,
    },
    ArgsTooLarge {
        bytes: usize,
    },
    Arg {
        task: String,
        index: usize,
        arg: String,
        patterns: Vec<String>,
    },
    Env {
        task: String,
        name: String,
        accepted: Vec<String>,
    },
    SetByJobfile {
        task: String,
        name: String,
    },
    Data {
        task: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TooManyArgs { task, max, given } => write!(
                f,
                "task `{task}` accepts at most {max} argument{} (accept.max_args); the request has {given}",
                crate::leaf::words::plural(*max as usize)
            ),
            Refusal::ArgsTooLarge { bytes } => write!(
                f,
                "the arguments take {bytes} bytes, more than the {MAX_ARGS_BYTES} a request may append"
            ),
            Refusal::Arg {
                task,
                index,
                arg,
                patterns,
            } => {
                let shown = quoted(arg);
                if patterns.is_empty() {
                    return write!(
                        f,
                        "task `{task}` accepts no arguments (it declares no accept.args); argument {index} is {shown}"
                    );
                }
                let options: Vec<&String> =
                    patterns.iter().filter(|p| p.starts_with('-')).collect();
                if arg.starts_with('-') {
                    if options.is_empty() {
                        return write!(
                            f,
                            "argument {index} ({shown}) starts with `-`, and task `{task}` accepts no option: \
                             only a pattern of accept.args that itself starts with `-` admits one"
                        );
                    }
                    return write!(
                        f,
                        "argument {index} ({shown}) starts with `-` and matches none of the option \
                         patterns of task `{task}` (those of accept.args starting with `-`): {}",
                        join(options)
                    );
                }
                write!(
                    f,
                    "argument {index} ({shown}) matches none of the accept.args patterns of task `{task}`: {}",
                    join(patterns.iter())
                )
            }
            Refusal::Env {
                task,
                name,
                accepted,
            } if accepted.is_empty() => write!(
                f,
                "task `{task}` accepts no variables (it declares no accept.env); the request sets `{}`",
                name.escape_debug()
            ),
            Refusal::Env {
                task,
                name,
                accepted,
            } => write!(
                f,
                "task `{task}` does not accept the variable `{}` (accept.env: {})",
                name.escape_debug(),
                accepted.join(", ")
            ),
            Refusal::SetByJobfile { task, name } => write!(
                f,
                "`{name}` is set by the jobfile for task `{task}`; a request can never change it"
            ),
            Refusal::Data { task } => write!(
                f,
                "task `{task}` does not accept `data` (it does not declare `accept.data: true`)"
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// A submitter's text in a message: quoted, control characters escaped, cut short.
fn quoted(text: &str) -> String {
    const SHOWN: usize = 80;
    let mut shown: String = text.chars().take(SHOWN).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    format!("`{}`", shown.escape_debug())
}

fn join<'a>(patterns: impl IntoIterator<Item = &'a String>) -> String {
    patterns
        .into_iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Accept {
    pub fn nothing() -> Accept {
        Accept {
            max_args: DEFAULT_MAX_ARGS,
            ..Accept::default()
        }
    }

    /// Whether `task` may append `args`.
    pub fn check_args(&self, task: &str, args: &[String]) -> Result<(), Refusal> {
        if args.len() > self.max_args as usize {
            return Err(Refusal::TooManyArgs {
                task: task.to_string(),
                max: self.max_args,
                given: args.len(),
            });
        }
        let bytes: usize = args.iter().map(|a| a.len() + 1).sum();
        if bytes > MAX_ARGS_BYTES {
            return Err(Refusal::ArgsTooLarge { bytes });
        }
        for (index, arg) in args.iter().enumerate() {
            if !self.args.iter().any(|pattern| pattern.admits(arg)) {
                return Err(Refusal::Arg {
                    task: task.to_string(),
                    index: index + 1,
                    arg: arg.clone(),
                    patterns: self.args.iter().map(|p| p.source.clone()).collect(),
                });
            }
        }
        Ok(())
    }

    /// Whether a request for `task` may set the variables `names`; `set` is what the
    /// jobfile sets for it, which always wins.
    pub fn check_env<'a>(
        &self,
        task: &str,
        names: impl IntoIterator<Item = &'a String>,
        set: &BTreeMap<String, String>,
    ) -> Result<(), Refusal> {
        for name in names {
            if set.contains_key(name) {
                return Err(Refusal::SetByJobfile {
                    task: task.to_string(),
                    name: name.clone(),
                });
            }
            if !self.env.contains(name) {
                return Err(Refusal::Env {
                    task: task.to_string(),
                    name: name.clone(),
                    accepted: self.env.clone(),
                });
            }
        }
        Ok(())
    }

    pub fn check_data(&self, task: &str, has_data: bool) -> Result<(), Refusal> {
        if has_data && !self.data {
            return Err(Refusal::Data {
                task: task.to_string(),
            });
        }
        Ok(())
    }
}

/// Variables no spool file may set, whatever its task accepts: each can choose the code
/// that runs (the loader, the PATH lookup, a shell's start-up, an interpreter's import
/// path or start-up options, a tool's configuration) or where its traffic goes. The
/// comparisons are made on the upper-cased name.
const FORBIDDEN_NAMES: &[&str] = &[
    "PATH",
    "HOME",
    "SHELL",
    "USER",
    "LOGNAME",
    "IFS",
    "ENV",
    "BASH_ENV",
    "CDPATH",
    "GLOBIGNORE",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "TMPDIR",
    "GLIBC_TUNABLES",
    "LOCPATH",
    "NLSPATH",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "CLASSPATH",
    "VIRTUAL_ENV",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "BROWSER",
    "TERMINFO",
    "TERMINFO_DIRS",
    "SSLKEYLOGFILE",
    "GOPATH",
    "GOROOT",
    "GOFLAGS",
    "GOENV",
    "GOTOOLCHAIN",
    "RUSTFLAGS",
    "RUSTC_WRAPPER",
];
const FORBIDDEN_PREFIXES: &[&str] = &[
    "LD_",
    "DYLD_",
    "JOBD_",
    "BASH_FUNC_",
    "MALLOC_",
    "PYTHON",
    "UV_",
    "PIP_",
    "PIPENV_",
    "POETRY_",
    "CONDA_",
    "DJANGO_",
    "NODE_",
    "NPM_",
    "YARN_",
    "JAVA",
    "JDK_",
    "MAVEN_",
    "GRADLE_",
    "RUBY",
    "GEM_",
    "BUNDLE_",
    "PERL",
    "PHP",
    "LUA_",
    "CARGO_",
    "DOTNET_",
    "COMPLUS_",
    "CORECLR_",
    "ERL_",
    "GIT_",
    "SSH_",
    "GPG",
    "LESS",
    "XDG_",
    "SSL_",
    "OPENSSL_",
    "CURL_",
    "REQUESTS_",
    "KRB5",
];
const FORBIDDEN_SUFFIXES: &[&str] = &[
    "_PATH", "_OPTIONS", "_OPTS", "_FLAGS", "_HOME", "_MODULE", "_FILE", "_CONF", "_COMMAND",
];
const FORBIDDEN_SUBSTRINGS: &[&str] = &["SETTINGS", "CONFIG", "PRELOAD", "PROXY"];

/// The fence as lists, for `tasks.json` and the documentation.
#[derive(Debug, Clone, Copy)]
pub struct Fence {
    pub names: &'static [&'static str],
    pub prefixes: &'static [&'static str],
    pub suffixes: &'static [&'static str],
    pub substrings: &'static [&'static str],
}

pub const FENCE: Fence = Fence {
    names: FORBIDDEN_NAMES,
    prefixes: FORBIDDEN_PREFIXES,
    suffixes: FORBIDDEN_SUFFIXES,
    substrings: FORBIDDEN_SUBSTRINGS,
};

/// Whether the fence keeps spool files from setting `name`.
pub fn forbidden(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    FORBIDDEN_NAMES.contains(&upper.as_str())
        || FORBIDDEN_PREFIXES.iter().any(|p| upper.starts_with(p))
        || FORBIDDEN_SUFFIXES.iter().any(|s| upper.ends_with(s))
        || FORBIDDEN_SUBSTRINGS.iter().any(|s| upper.contains(s))
}

/// Why a spool file may not set `name`, as one message.
pub fn forbidden_message(name: &str) -> String {
    format!(
        "`{}` may not be set by a spool file: it could change the program that runs \
         (see the fence of variables in jobd(8))",
        name.escape_debug()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(patterns: &[&str]) -> Accept {
        Accept {
            args: patterns.iter().map(|p| Pattern::new(p).unwrap()).collect(),
            ..Accept::nothing()
        }
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn an_argument_must_wholly_match_one_pattern() {
        let report = accept(&["--month", r"\d{4}-\d{2}"]);
        assert!(
            report
                .check_args("r", &args(&["--month", "2026-10"]))
                .is_ok()
        );
        assert!(report.check_args("r", &[]).is_ok());
        let err = report
            .check_args("r", &args(&["--month", "2026-10x"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("argument 2 (`2026-10x`) matches none"),
            "{err}"
        );
        // Anchored at both ends, whatever the pattern says: no prefix or suffix match.
        let alternation = accept(&["a|b"]);
        assert!(alternation.check_args("t", &args(&["a"])).is_ok());
        assert!(alternation.check_args("t", &args(&["ab"])).is_err());
    }

    #[test]
    fn only_a_pattern_starting_with_a_dash_admits_an_option() {
        let anything = accept(&[".*"]);
        assert!(anything.check_args("t", &args(&["plain text", ""])).is_ok());
        for option in ["--settings=evil", "--pythonpath=uploads", "-c", "-"] {
            let err = anything
                .check_args("t", &args(&[option]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("starts with `-`"), "{option}: {err}");
        }
        let grouped = accept(&["(-x)", r"\-x"]);
        assert!(grouped.check_args("t", &args(&["-x"])).is_err());
        let options = accept(&["--month", "--day=.*"]);
        assert!(options.check_args("t", &args(&["--day=3"])).is_ok());
        let err = options
            .check_args("t", &args(&["--settings=evil"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`--month`, `--day=.*`"), "{err}");
    }

    #[test]
    fn counts_and_sizes_are_bounded() {
        let anything = Accept {
            max_args: 2,
            ..accept(&[".*"])
        };
        let err = anything
            .check_args("t", &args(&["a", "b", "c"]))
            .unwrap_err();
        assert!(matches!(err, Refusal::TooManyArgs { given: 3, .. }));
        let big = vec!["x".repeat(MAX_ARGS_BYTES)];
        let err = accept(&[".*"]).check_args("t", &big).unwrap_err();
        assert!(err.to_string().contains("more than the 131072"), "{err}");
        let none = Accept::nothing();
        let err = none.check_args("t", &args(&["x"])).unwrap_err().to_string();
        assert!(err.contains("accepts no arguments"), "{err}");
    }

    #[test]
    fn env_names_must_be_declared_and_never_set_by_the_jobfile() {
        let accept = Accept {
            env: vec!["REPORT_LANG".to_string()],
            ..Accept::nothing()
        };
        let set = BTreeMap::from([("REPORT_LANG".to_string(), "en".to_string())]);
        let name = vec!["REPORT_LANG".to_string()];
        assert!(accept.check_env("r", &name, &BTreeMap::new()).is_ok());
        let err = accept.check_env("r", &name, &set).unwrap_err().to_string();
        assert!(err.contains("is set by the jobfile"), "{err}");
        let other = vec!["LANG".to_string()];
        let err = accept
            .check_env("r", &other, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("accept.env: REPORT_LANG"), "{err}");
        assert!(accept.check_data("r", false).is_ok());
        assert!(accept.check_data("r", true).is_err());
    }

    #[test]
    fn the_fence_holds_whatever_the_case() {
        for name in [
            "PATH",
            "ld_preload",
            "UV_ENV_FILE",
            "UV_PYTHON",
            "GIT_CONFIG_COUNT",
            "GIT_CONFIG_KEY_0",
            "HOME",
            "JDK_JAVA_OPTIONS",
            "DJANGO_SETTINGS_MODULE",
            "MY_SETTINGS",
            "PYTHONSTARTUP",
            "NODE_OPTIONS",
            "https_proxy",
            "SSL_CERT_FILE",
            "XDG_CONFIG_HOME",
            "GCONV_PATH",
            "JOBD_SPOOL_FILE",
            "BASH_FUNC_x%%",
        ] {
            assert!(forbidden(name), "{name}");
        }
        for name in ["REPORT_LANG", "LANG", "TZ", "LC_ALL", "MONTH"] {
            assert!(!forbidden(name), "{name}");
        }
    }

    #[test]
    fn a_bad_pattern_says_why() {
        assert!(Pattern::new("(").unwrap_err().contains("unclosed group"));
        assert!(
            Pattern::new(r"\w{1000}{1000}")
                .unwrap_err()
                .contains("too large")
        );
    }
}
