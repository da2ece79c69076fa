//! Queries going out and rows coming back, as text: jobd's queries are few and small,
//! and text keeps every value readable in a log line and independent of libpq's binary
//! formats.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

/// A query: SQL with `$n` placeholders and their values, or a script of several
/// statements without parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub sql: String,
    pub params: Vec<Option<String>>,
    /// Sent with the simple protocol (several statements, no parameters).
    pub script: bool,
}

impl Query {
    pub fn new(sql: impl Into<String>) -> Query {
        Query {
            sql: sql.into(),
            params: Vec::new(),
            script: false,
        }
    }

    /// Several statements, separated by `;`, without parameters.
    pub fn script(sql: impl Into<String>) -> Query {
        Query {
            script: true,
            ..Query::new(sql)
        }
    }

    /// Append the value of the next `$n`.
    pub fn bind(mut self, value: impl Param) -> Query {
        self.params.push(value.to_param());
        self
    }
}

/// A value in PostgreSQL's text input syntax; None is SQL NULL. The SQL casts each
/// placeholder (`$2::timestamptz`), so the text need only be valid input for that type.
pub trait Param {
    fn to_param(&self) -> Option<String>;
}

impl Param for &str {
    fn to_param(&self) -> Option<String> {
        Some(self.to_string())
    }
}

impl Param for String {
    fn to_param(&self) -> Option<String> {
        Some(self.clone())
    }
}

impl Param for i64 {
    fn to_param(&self) -> Option<String> {
        Some(self.to_string())
    }
}

impl Param for i32 {
    fn to_param(&self) -> Option<String> {
        Some(self.to_string())
    }
}

impl Param for u32 {
    fn to_param(&self) -> Option<String> {
        Some(self.to_string())
    }
}

impl Param for bool {
    fn to_param(&self) -> Option<String> {
        Some(if *self { "t" } else { "f" }.to_string())
    }
}

/// An instant, in RFC 3339 with microseconds (PostgreSQL's precision) and `Z`, which
/// PostgreSQL reads the same whatever the session's DateStyle and TimeZone.
impl Param for DateTime<Utc> {
    fn to_param(&self) -> Option<String> {
        Some(self.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
    }
}

/// A duration, as an interval in microseconds.
impl Param for Duration {
    fn to_param(&self) -> Option<String> {
        Some(format!("{} microseconds", self.as_micros()))
    }
}

impl Param for serde_json::Value {
    fn to_param(&self) -> Option<String> {
        Some(self.to_string())
    }
}

/// An array literal (`{1,2}`, `{"a","b"}`), for `$n::bigint[]` and `$n::text[]`.
impl Param for &[i64] {
    fn to_param(&self) -> Option<String> {
        let items: Vec<String> = self.iter().map(i64::to_string).collect();
        Some(format!("{{{}}}", items.join(",")))
    }
}

impl Param for &[String] {
    fn to_param(&self) -> Option<String> {
        let items: Vec<String> = self
            .iter()
            .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        Some(format!("{{{}}}", items.join(",")))
    }
}

impl<T: Param> Param for Option<T> {
    fn to_param(&self) -> Option<String> {
        self.as_ref().and_then(Param::to_param)
    }
}

/// The rows a query returned, each value as text or NULL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
}

impl Rows {
    pub fn new(columns: Vec<String>, rows: Vec<Vec<Option<String>>>) -> Rows {
        Rows { columns, rows }
    }

    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        (0..self.rows.len()).map(move |index| Row { rows: self, index })
    }

    /// The first row; an error naming the query's purpose when there is none.
    pub fn first(&self, what: &str) -> Result<Row<'_>, DecodeError> {
        self.iter().next().ok_or_else(|| DecodeError {
            column: String::new(),
            problem: format!("{what} returned no row"),
        })
    }
}

/// One row; values are found by column name.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    rows: &'a Rows,
    index: usize,
}

impl<'a> Row<'a> {
    /// The value of `column` as text, None for NULL.
    pub fn opt_str(&self, column: &str) -> Result<Option<&'a str>, DecodeError> {
        let at = self
            .rows
            .columns
            .iter()
            .position(|c| c == column)
            .ok_or_else(|| DecodeError::new(column, "no such column in the result"))?;
        Ok(self.rows.rows[self.index][at].as_deref())
    }

    pub fn str(&self, column: &str) -> Result<&'a str, DecodeError> {
        self.opt_str(column)?
            .ok_or_else(|| DecodeError::new(column, "NULL where a value was expected"))
    }

    pub fn text(&self, column: &str) -> Result<String, DecodeError> {
        self.str(column).map(str::to_string)
    }

    pub fn opt_text(&self, column: &str) -> Result<Option<String>, DecodeError> {
        Ok(self.opt_str(column)?.map(str::to_string))
    }

    pub fn opt_i64(&self, column: &str) -> Result<Option<i64>, DecodeError> {
        self.opt_str(column)?
            .map(|v| {
                v.parse()
                    .map_err(|_| DecodeError::new(column, format!("`{v}` is not an integer")))
            })
            .transpose()
    }

    pub fn i64(&self, column: &str) -> Result<i64, DecodeError> {
        self.opt_i64(column)?
            .ok_or_else(|| DecodeError::new(column, "NULL where an integer was expected"))
    }

    pub fn opt_i32(&self, column: &str) -> Result<Option<i32>, DecodeError> {
        self.opt_i64(column)?
            .map(|v| {
                i32::try_from(v)
                    .map_err(|_| DecodeError::new(column, format!("{v} is out of range")))
            })
            .transpose()
    }

    pub fn i32(&self, column: &str) -> Result<i32, DecodeError> {
        self.opt_i32(column)?
            .ok_or_else(|| DecodeError::new(column, "NULL where an integer was expected"))
    }

    pub fn bool(&self, column: &str) -> Result<bool, DecodeError> {
        match self.str(column)? {
            "t" => Ok(true),
            "f" => Ok(false),
            other => Err(DecodeError::new(
                column,
                format!("`{other}` is not a boolean"),
            )),
        }
    }

    /// An instant the SQL sent as `extract(epoch FROM …)` (seconds with up to six
    /// decimals): exact, and independent of the session's DateStyle and TimeZone.
    pub fn opt_epoch(&self, column: &str) -> Result<Option<DateTime<Utc>>, DecodeError> {
        self.opt_str(column)?
            .map(|v| {
                parse_epoch(v)
                    .ok_or_else(|| DecodeError::new(column, format!("`{v}` is not an epoch")))
            })
            .transpose()
    }

    pub fn epoch(&self, column: &str) -> Result<DateTime<Utc>, DecodeError> {
        self.opt_epoch(column)?
            .ok_or_else(|| DecodeError::new(column, "NULL where an instant was expected"))
    }

    /// A `json`/`jsonb` value; NULL reads as JSON null.
    pub fn json(&self, column: &str) -> Result<serde_json::Value, DecodeError> {
        match self.opt_str(column)? {
            None => Ok(serde_json::Value::Null),
            Some(v) => serde_json::from_str(v)
                .map_err(|e| DecodeError::new(column, format!("not JSON: {e}"))),
        }
    }
}

fn parse_epoch(text: &str) -> Option<DateTime<Utc>> {
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
    let seconds: i64 = seconds.parse().ok()?;
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: u32 = format!("{fraction:0<9}").parse().ok()?;
    if text.starts_with('-') && nanos > 0 {
        // "-1.5" is 1.5 s before the epoch: -2 s plus 0.5 s.
        Utc.timestamp_opt(seconds - 1, 1_000_000_000 - nanos)
            .single()
    } else {
        Utc.timestamp_opt(seconds, nanos).single()
    }
}

/// The server refused or failed a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    /// The SQLSTATE code, e.g. `23505` for a unique violation.
    pub sqlstate: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.sqlstate)?;
        if let Some(detail) = &self.detail {
            write!(f, "; {detail}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for QueryError {}

/// A result that does not have the shape the caller expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub column: String,
    pub problem: String,
}

impl DecodeError {
    pub fn new(column: &str, problem: impl Into<String>) -> DecodeError {
        DecodeError {
            column: column.to_string(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.column.is_empty() {
            write!(f, "unexpected result: {}", self.problem)
        } else {
            write!(
                f,
                "unexpected result in column {}: {}",
                self.column, self.problem
            )
        }
    }
}

impl std::error::Error for DecodeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_keep_microseconds_on_both_sides_of_1970() {
        let at = parse_epoch("1795000000.123456").unwrap();
        assert_eq!(at.timestamp(), 1_795_000_000);
        assert_eq!(at.timestamp_subsec_micros(), 123_456);
        assert_eq!(parse_epoch("12").unwrap().timestamp(), 12);
        let before = parse_epoch("-1.5").unwrap();
        assert_eq!(before.timestamp_millis(), -1500);
        assert_eq!(parse_epoch("-0.25").unwrap().timestamp_millis(), -250);
        assert!(parse_epoch("1.2e3").is_none());
    }

    #[test]
    fn parameters_are_postgres_text_input() {
        let at = Utc.timestamp_opt(1_795_000_000, 5_000).single().unwrap();
        assert_eq!(at.to_param().unwrap(), "2026-11-18T11:06:40.000005Z");
        assert_eq!(
            Duration::from_millis(1500).to_param().unwrap(),
            "1500000 microseconds"
        );
        let names = ["a\"b".to_string(), "c\\d".to_string()];
        assert_eq!((&names[..]).to_param().unwrap(), r#"{"a\"b","c\\d"}"#);
        assert_eq!((&[1i64, 2][..]).to_param().unwrap(), "{1,2}");
        assert_eq!(None::<i64>.to_param(), None);
    }
}
