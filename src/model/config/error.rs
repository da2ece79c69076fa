//! What can be wrong with a jobfile, said so that the user can find and fix it.

use std::fmt;
use std::path::PathBuf;

use crate::leaf::yaml::Pos;

/// A jobfile that jobd will not run. Holds every problem found, not just the first, so
/// that one `jobd check` shows them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

/// One problem, at one place in the file (the place is unknown only when the file as a
/// whole could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub pos: Option<Pos>,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The file could not be read (missing, unreadable, not a file, too large, not UTF-8).
    Unreadable(String),
    /// The YAML itself is broken.
    Syntax(String),
    UnknownKey {
        path: String,
        key: String,
        suggestion: Option<String>,
        allowed: Vec<&'static str>,
    },
    WrongType {
        path: String,
        expected: &'static str,
        found: &'static str,
    },
    /// The right type, but a value jobd cannot use; `reason` says why.
    BadValue {
        path: String,
        reason: String,
    },
    Missing {
        path: String,
        key: &'static str,
    },
    NameClash {
        name: String,
        first: Pos,
    },
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::Unreadable(reason) => f.write_str(reason),
            ProblemKind::Syntax(reason) => write!(f, "invalid YAML: {reason}"),
            ProblemKind::UnknownKey {
                path,
                key,
                suggestion,
                allowed,
            } => {
                write!(f, "{path}: unknown key `{key}`")?;
                match suggestion {
                    Some(s) => write!(f, "; did you mean `{s}`?"),
                    None => write!(f, " (known keys: {})", allowed.join(", ")),
                }
            }
            ProblemKind::WrongType {
                path,
                expected,
                found,
            } => write!(f, "{path}: expected {expected}, found {found}"),
            ProblemKind::BadValue { path, reason } => write!(f, "{path}: {reason}"),
            ProblemKind::Missing { path, key } => write!(f, "{path}: `{key}:` is missing"),
            ProblemKind::NameClash { name, first } => write!(
                f,
                "`{name}` is both a job and a task (the other is at line {}); \
                 give them different names",
                first.line
            ),
        }
    }
}

impl fmt::Display for ConfigError {
    /// One line per problem, `file:line:column: message`, the form editors and CI
    /// annotations jump to.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match problem.pos {
                Some(pos) => write!(f, "{}:{}: {}", self.file.display(), pos, problem.kind)?,
                None => write!(f, "{}: {}", self.file.display(), problem.kind)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
