//! Counted words in messages: `1 job`, `2 jobs`.

/// The `s` a count of `n` takes in English.
pub fn plural(n: impl TryInto<u64>) -> &'static str {
    if n.try_into().ok() == Some(1) {
        ""
    } else {
        "s"
    }
}

/// `n` and its noun, agreeing: `1 task`, `3 tasks`.
pub fn count(n: impl TryInto<u64> + Copy + std::fmt::Display, noun: &str) -> String {
    format!("{n} {noun}{}", plural(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_everything_else_plural() {
        assert_eq!(count(1usize, "job"), "1 job");
        assert_eq!(count(0u32, "job"), "0 jobs");
        assert_eq!(count(2u64, "task"), "2 tasks");
    }
}
