//! Reading a located YAML tree into typed values, collecting problems with positions:
//! what the jobfile and spool files share.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{Problem, ProblemKind};
use crate::leaf::duration;
use crate::leaf::suggest;
use crate::leaf::yaml::{Node, Pos, Value};

/// Counts (`workers`, `retries`, `max_instances`) stop here: far above any real need,
/// far below an overflow.
pub(crate) const MAX_COUNT: u32 = 100_000;

/// A mapping's entries by key, after unknown keys were reported.
pub(crate) struct Fields<'a> {
    entries: Vec<(&'a str, &'a Node, &'a Node)>,
    /// Keys suggested for misspelt ones: a missing key that was suggested is a typo
    /// already reported, not a second problem.
    suggested: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    pub(crate) fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, value)| *value)
    }

    pub(crate) fn misspelt(&self, key: &str) -> bool {
        self.suggested.contains(&key)
    }
}

#[derive(Default)]
pub(crate) struct Checker {
    pub(crate) problems: Vec<Problem>,
    /// Cron schedules already parsed, by expression and zone: parsing is the costly
    /// part of loading a large jobfile, and a reload or a repeated expression need
    /// not pay it twice.
    pub(crate) schedules:
        std::collections::HashMap<(String, chrono_tz::Tz), crate::model::schedule::Schedule>,
}

impl Checker {
    pub(crate) fn report(&mut self, pos: Option<Pos>, kind: ProblemKind) {
        self.problems.push(Problem { pos, kind });
    }

    pub(crate) fn bad(&mut self, node: &Node, path: &str, reason: impl Into<String>) {
        self.report(
            Some(node.pos),
            ProblemKind::BadValue {
                path: path.to_string(),
                reason: reason.into(),
            },
        );
    }

    pub(crate) fn wrong_type(&mut self, node: &Node, path: &str, expected: &'static str) {
        self.report(
            Some(node.pos),
            ProblemKind::WrongType {
                path: path.to_string(),
                expected,
                found: node.value.kind(),
            },
        );
    }

    /// Check that `node` is a mapping (nothing counts as an empty one) whose keys are
    /// strings from `allowed`, reporting the others with the key probably meant.
    pub(crate) fn fields<'a>(
        &mut self,
        node: &'a Node,
        path: &str,
        allowed: &'static [&'static str],
    ) -> Option<Fields<'a>> {
        let entries = match &node.value {
            Value::Map(entries) => entries,
            Value::Null => {
                return Some(Fields {
                    entries: Vec::new(),
                    suggested: Vec::new(),
                });
            }
            _ => {
                self.wrong_type(node, path, "a mapping of `key: value` lines");
                return None;
            }
        };
        let mut fields = Fields {
            entries: Vec::with_capacity(entries.len()),
            suggested: Vec::new(),
        };
        for (key, value) in entries {
            let Value::Str(name) = &key.value else {
                self.wrong_type(key, path, "a key name");
                continue;
            };
            if allowed.contains(&name.as_str()) {
                fields.entries.push((name, key, value));
            } else {
                let suggestion = suggest::closest(name, allowed.iter().copied());
                fields.suggested.extend(suggestion);
                self.report(
                    Some(key.pos),
                    ProblemKind::UnknownKey {
                        path: path.to_string(),
                        key: name.clone(),
                        suggestion: suggestion.map(str::to_string),
                        allowed: allowed.to_vec(),
                    },
                );
            }
        }
        Some(fields)
    }

    pub(crate) fn duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        match &node.value {
            Value::Str(text) => match duration::parse(text) {
                Ok(d) => Some(d),
                Err(err) => {
                    self.bad(node, path, err.to_string());
                    None
                }
            },
            Value::Int(n) => {
                self.bad(
                    node,
                    path,
                    format!("`{n}` has no unit; write it like {n}s or {n}ms"),
                );
                None
            }
            _ => {
                self.wrong_type(node, path, "a duration like 250ms, 5s, 2m, 1h or 1d");
                None
            }
        }
    }

    /// A size in bytes: `512M`, `2G`, `800K` (powers of 1024), or a number of bytes.
    pub(crate) fn size(&mut self, node: &Node, path: &str) -> Option<u64> {
        let text = match &node.value {
            Value::Int(n) if *n > 0 => return Some(*n as u64),
            Value::Str(text) => text.trim(),
            _ => {
                self.wrong_type(node, path, "a size like 512M or 2G");
                return None;
            }
        };
        let (digits, unit) = text.split_at(
            text.find(|c: char| !c.is_ascii_digit())
                .unwrap_or(text.len()),
        );
        let scale: u64 = match unit.trim() {
            "" | "B" => 1,
            "K" | "KiB" => 1 << 10,
            "M" | "MiB" => 1 << 20,
            "G" | "GiB" => 1 << 30,
            _ => 0,
        };
        match digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
        {
            Some(bytes) if bytes > 0 => Some(bytes),
            _ => {
                self.bad(
                    node,
                    path,
                    format!(
                        "`{text}` is not a size; write it like 512M or 2G (K, M, G: powers of 1024)"
                    ),
                );
                None
            }
        }
    }

    pub(crate) fn count(&mut self, node: &Node, path: &str, min: u32) -> Option<u32> {
        match &node.value {
            Value::Int(n) if *n >= i128::from(min) && *n <= i128::from(MAX_COUNT) => {
                Some(*n as u32)
            }
            Value::Int(n) => {
                self.bad(
                    node,
                    path,
                    format!("{n} is out of range: use a whole number from {min} to {MAX_COUNT}"),
                );
                None
            }
            _ => {
                self.wrong_type(node, path, "a whole number");
                None
            }
        }
    }

    pub(crate) fn choice<T: Copy>(
        &mut self,
        node: &Node,
        path: &str,
        options: &[(&str, T)],
    ) -> Option<T> {
        let names = || options.iter().map(|(name, _)| *name);
        let Value::Str(word) = &node.value else {
            let list = names().collect::<Vec<_>>().join(" | ");
            self.bad(
                node,
                path,
                format!("expected one of {list}, found {}", node.value.kind()),
            );
            return None;
        };
        if let Some((_, value)) = options.iter().find(|(name, _)| name == word) {
            return Some(*value);
        }
        let hint = match suggest::closest(word, names()) {
            Some(near) => format!("; did you mean `{near}`?"),
            None => format!(
                " (choose one of {})",
                names().collect::<Vec<_>>().join(", ")
            ),
        };
        self.bad(node, path, format!("unknown value `{word}`{hint}"));
        None
    }

    /// A string, or an integer taken as the digits written (`[sleep, 5]`). Other
    /// scalars are refused: YAML turns `yes` into true and `1.10` into 1.1, and passing
    /// those on would not be what the user wrote.
    pub(crate) fn text(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(n) => Some(n.to_string()),
            Value::Bool(_) | Value::Float(_) | Value::Null => {
                self.bad(
                    node,
                    path,
                    format!(
                        "found {}; put the value in quotes so that it is passed on exactly as written",
                        node.value.kind()
                    ),
                );
                None
            }
            _ => {
                self.wrong_type(node, path, "a string");
                None
            }
        }
    }

    /// A user or group name: a string, or a numeric id.
    pub(crate) fn name(&mut self, node: &Node, path: &str) -> Option<String> {
        let name = self.text(node, path)?;
        if name.is_empty() {
            self.bad(node, path, "is empty");
            return None;
        }
        Some(name)
    }

    pub(crate) fn string_list(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        let Value::Seq(items) = &node.value else {
            self.wrong_type(node, path, "a list like [a, b]");
            return None;
        };
        items.iter().map(|item| self.text(item, path)).collect()
    }

    pub(crate) fn path(&mut self, node: &Node, path: &str, base: &Path) -> Option<PathBuf> {
        let text = self.text(node, path)?;
        if text.is_empty() {
            self.bad(node, path, "the path is empty");
            return None;
        }
        if text.contains('\0') {
            self.bad(node, path, "the path contains a NUL character");
            return None;
        }
        Some(base.join(text))
    }

    pub(crate) fn env(&mut self, node: &Node, path: &str) -> Option<BTreeMap<String, String>> {
        let Value::Map(entries) = &node.value else {
            if node.value == Value::Null {
                return Some(BTreeMap::new());
            }
            self.wrong_type(node, path, "a mapping of NAME: value");
            return None;
        };
        let mut env = BTreeMap::new();
        for (key, value) in entries {
            let Value::Str(name) = &key.value else {
                self.wrong_type(key, path, "a variable name");
                continue;
            };
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                self.bad(key, path, format!("`{name}` is not a valid variable name"));
                continue;
            }
            if name.starts_with("JOBD_") {
                self.bad(
                    key,
                    path,
                    format!("`{name}`: variables starting with JOBD_ are set by jobd itself"),
                );
                continue;
            }
            let Some(text) = self.text(value, &format!("{path}.{name}")) else {
                continue;
            };
            if text.contains('\0') {
                self.bad(
                    value,
                    path,
                    format!("the value of `{name}` contains a NUL character"),
                );
                continue;
            }
            env.insert(name.clone(), text);
        }
        Some(env)
    }
}
