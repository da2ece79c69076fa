//! The one place that parses YAML: text in, a tree of located nodes out.
//!
//! Everything else (the jobfile, spool files) reads this tree, so the YAML crate can be
//! swapped by changing this file alone. serde-saphyr does the parsing: it is maintained,
//! has no unsafe code, reports line and column, treats duplicate keys as errors and
//! enforces budgets against alias bombs and deep nesting.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A position in the source text, 1-based, in characters; ordered as in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A YAML value with the position it was written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in the order written; duplicate keys were already refused by the parser.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// The word a user knows the kind of value by, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "a number",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// The YAML could not be read at all (syntax, duplicate key, a budget exceeded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub message: String,
    pub pos: Option<Pos>,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for YamlError {}

/// Limits far above any honest jobfile or spool file, low enough that a hostile one is
/// refused in milliseconds with little memory.
const MAX_DEPTH: usize = 32;
const MAX_NODES: usize = 500_000;
const MAX_ALIASES: usize = 1_000;
const MAX_EVENTS: usize = 2_000_000;
const MAX_REPLAYED_EVENTS: usize = 100_000;

/// The parser's settings: YAML 1.2 scalars and the budgets above, with at most
/// `max_nodes` nodes.
fn options(max_nodes: usize) -> serde_saphyr::Options {
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_nodes: max_nodes,
            max_aliases: MAX_ALIASES,
            max_events: MAX_EVENTS,
            max_documents: 1,
        },
        alias_limits: alias_limits,
        with_snippet: false,
        // YAML 1.2: `yes`, `on` and `off` stay strings, as most users expect.
        strict_booleans: true,
        // Keep `0755` and `1_000` as written instead of turning them into numbers.
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
    }
}

/// Parse one YAML document into a located tree. An empty document is `Null`.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    parse_within(text, MAX_NODES)
}

/// `parse`, with at most `max_nodes` values: for files whose size alone would let
/// them cost too much time (a spool file is parsed inside the loop).
pub fn parse_within(text: &str, max_nodes: usize) -> Result<Node, YamlError> {
    let options = options(max_nodes);
    let parsed: Result<Option<Spanned<Value>>, _> =
        serde_saphyr::from_str_with_options(text, options);
    match parsed {
        Ok(Some(spanned)) => Ok(node(spanned)),
        Ok(None) => Ok(Node {
            value: Value::Null,
            pos: Pos { line: 1, column: 1 },
        }),
        Err(err) => {
            let pos = err.location().and_then(|loc| {
                (loc.line() > 0).then(|| Pos {
                    line: loc.line(),
                    column: loc.column(),
                })
            });
            let message = match (unknown_alias(&err), pos) {
                (true, Some(pos)) => alias_hint(text, pos),
                _ => describe(&err, max_nodes),
            };
            Err(YamlError { pos, message })
        }
    }
}

fn unknown_alias(err: &serde_saphyr::Error) -> bool {
    use serde_saphyr::Error as E;
    match err {
        E::UnknownAnchor { .. } => true,
        E::AliasError { error, .. } | E::WithSnippet { error, .. } => unknown_alias(error),
        _ => false,
    }
}

/// An unquoted value that starts with `*` is an alias in YAML (a reference to an
/// `&anchor`): what cron users write as `schedule: */5 * * * *`. Say so, and show the
/// value quoted, rather than "unknown anchor".
fn alias_hint(text: &str, pos: Pos) -> String {
    let line = text
        .lines()
        .nth(pos.line.saturating_sub(1) as usize)
        .unwrap_or("");
    let from: String = line
        .chars()
        .skip(pos.column.saturating_sub(1) as usize)
        .collect();
    let value = match from.find(" #") {
        Some(at) => &from[..at],
        None => &from,
    }
    .trim_end();
    if !value.starts_with('*') {
        return "an alias (`*name`) refers to an anchor (`&name`) that is not defined".to_string();
    }
    let quoted = if value.contains('"') {
        format!("'{value}'")
    } else {
        format!("\"{value}\"")
    };
    format!(
        "`{value}` starts with `*`, which YAML reads as an alias (a reference to an `&anchor`); \
         put the value in quotes: {quoted}"
    )
}

/// Messages in the user's terms: what is wrong with their file, not which parser option
/// would have let it through.
fn describe(err: &serde_saphyr::Error, max_nodes: usize) -> String {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    match err {
        E::DuplicateMappingKey { key: Some(key), .. } => format!("duplicate key `{key}`"),
        E::DuplicateMappingKey { key: None, .. } => "duplicate key".to_string(),
        E::Budget { breach, .. } => match breach {
            B::Depth { .. } => format!("nested deeper than {MAX_DEPTH} levels"),
            B::Documents { .. } => "more than one YAML document (`---`) in one file".to_string(),
            B::Aliases { .. } | B::Anchors { .. } => {
                format!("more than {MAX_ALIASES} aliases or anchors")
            }
            B::Nodes { .. } => format!("too large or too complex: more than {max_nodes} values"),
            _ => "too large or too complex to be a jobd file".to_string(),
        },
        E::AliasReplayLimitExceeded { .. }
        | E::AliasReplayCounterOverflow { .. }
        | E::AliasReplayStackDepthExceeded { .. } => {
            "aliases expand to too much data (an alias bomb?)".to_string()
        }
        // What went wrong while an alias was replayed, or behind a snippet.
        E::AliasError { error, .. } | E::WithSnippet { error, .. } => describe(error, max_nodes),
        other => plain_message(&other.to_string()),
    }
}

/// A tree as JSON: keys that are not strings are written as text, and a number JSON
/// cannot hold goes as its digits.
pub fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(n) => i64::try_from(*n)
            .map(J::from)
            .or_else(|_| u64::try_from(*n).map(J::from))
            .unwrap_or_else(|_| J::String(n.to_string())),
        Value::Float(x) => serde_json::Number::from_f64(*x).map_or(J::Null, J::Number),
        Value::Str(s) => J::String(s.clone()),
        Value::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(key, value)| {
                    let key = match &key.value {
                        Value::Str(s) => s.clone(),
                        _ => to_json(key).to_string(),
                    };
                    (key, to_json(value))
                })
                .collect(),
        ),
    }
}

/// serde-saphyr appends "at line L, column C" to its messages; the caller prints the
/// position itself, in the file:line:column form editors understand.
fn plain_message(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message).trim();
    match first.rfind(" at line ") {
        Some(at) => first[..at].to_string(),
        None => first.to_string(),
    }
}

fn node(spanned: Spanned<Value>) -> Node {
    Node {
        value: spanned.value,
        pos: Pos {
            line: spanned.referenced.line(),
            column: spanned.referenced.column(),
        },
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        i128::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom("number too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Value, E> {
        Err(E::custom("binary values are not supported"))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(node(item));
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<Spanned<Value>, Spanned<Value>>()? {
            entries.push((node(key), node(value)));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u64, column: u64) -> Pos {
        Pos { line, column }
    }

    #[test]
    fn scalars_and_positions() {
        let doc = parse("a: 1\nb:\n  - x\n  - true\nc: 2.5\nd:\n").unwrap();
        let Value::Map(entries) = doc.value else {
            panic!("not a map")
        };
        assert_eq!(entries[0].0.value, Value::Str("a".into()));
        assert_eq!(entries[0].0.pos, at(1, 1));
        assert_eq!(entries[0].1.value, Value::Int(1));
        assert_eq!(entries[0].1.pos, at(1, 4));
        let Value::Seq(items) = &entries[1].1.value else {
            panic!("not a seq")
        };
        assert_eq!(items[0].value, Value::Str("x".into()));
        assert_eq!(items[1].pos, at(4, 5));
        assert_eq!(items[1].value, Value::Bool(true));
        assert_eq!(entries[2].1.value, Value::Float(2.5));
        assert_eq!(entries[3].1.value, Value::Null);
    }

    #[test]
    fn a_tree_becomes_json() {
        let doc = parse("{a: [1, 2.5, x, null, true], 3: {b: 18446744073709551615}}").unwrap();
        assert_eq!(
            to_json(&doc),
            serde_json::json!({"a": [1, 2.5, "x", null, true], "3": {"b": 18446744073709551615u64}})
        );
    }

    #[test]
    fn empty_document_is_null() {
        assert_eq!(parse("").unwrap().value, Value::Null);
        assert_eq!(parse("# only a comment\n").unwrap().value, Value::Null);
    }

    #[test]
    fn duplicate_keys_are_errors_with_a_position() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert!(err.message.contains("duplicate"), "{err:?}");
        assert_eq!(err.pos.map(|p| p.line), Some(3));
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.is_some(), "{err:?}");
    }

    #[test]
    fn an_unquoted_cron_expression_is_told_to_be_quoted() {
        let err = parse("jobs:\n  a:\n    schedule: */5 * * * * *   # every 5s\n").unwrap_err();
        assert_eq!(err.pos, Some(at(3, 15)));
        assert_eq!(
            err.message,
            "`*/5 * * * * *` starts with `*`, which YAML reads as an alias (a reference to an \
             `&anchor`); put the value in quotes: \"*/5 * * * * *\""
        );
    }

    #[test]
    fn alias_bomb_is_refused_quickly() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let (parsed, cpu) = crate::leaf::cpu::measure(|| parse(&text));
        assert!(parsed.is_err());
        assert!(cpu < std::time::Duration::from_secs(2), "took {cpu:?}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&text).is_err());
        let mut block = String::new();
        for depth in 0..200 {
            block.push_str(&" ".repeat(depth * 2));
            block.push_str("k:\n");
        }
        assert!(parse(&block).is_err());
    }
}
