//! "Did you mean …?" for misspelt keys, values and zone names.

/// Longer words get no suggestion.
const MAX_WORD: usize = 100;

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // Nothing a person mistyped is this long, and the distance costs the product of
    // the lengths: a megabyte of garbage must not stall a reload.
    if word.len() > MAX_WORD {
        return None;
    }
    let word_lower = word.to_lowercase();
    // A third of the word's length, at least one edit: `shedule` → `schedule`, but `foo`
    // suggests nothing rather than something unrelated. A word sharing its first four
    // letters with a candidate (`retry`, `retries`) is a near miss too.
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|candidate| {
            let candidate_lower = candidate.to_lowercase();
            let shared = word_lower
                .chars()
                .zip(candidate_lower.chars())
                .take_while(|(a, b)| a == b)
                .count();
            let prefix = shared >= 4;
            (distance(&word_lower, &candidate_lower), prefix, candidate)
        })
        .filter(|(d, prefix, _)| *d <= limit || *prefix)
        .map(|(d, _, candidate)| (d, candidate))
        .min_by_key(|(d, _)| *d)
        .map(|(_, candidate)| candidate)
}

/// Optimal string alignment distance: Levenshtein plus adjacent transpositions, which
/// are the commonest typing slip.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_misses_only() {
        let keys = ["schedule", "every", "command", "timeout", "max_instances"];
        assert_eq!(closest("shedule", keys), Some("schedule"));
        assert_eq!(closest("comand", keys), Some("command"));
        assert_eq!(closest("timeuot", keys), Some("timeout"));
        assert_eq!(closest("max_instance", keys), Some("max_instances"));
        assert_eq!(closest("Command", keys), Some("command"));
        assert_eq!(closest("foo", keys), None);
        assert_eq!(
            closest("retry", ["retries", "retry_delay"]),
            Some("retries")
        );
        assert_eq!(closest("user", keys), None);
    }
}
