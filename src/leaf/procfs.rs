//! What /proc says about processes: the one reader of its files.

use std::collections::HashMap;

/// The fields of /proc/PID/stat jobd reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `Z`...
    pub state: char,
    pub ppid: i32,
    pub pgid: i32,
}

/// Every process id in /proc.
pub fn pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .collect()
}

pub fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The name in parentheses may hold spaces and parentheses: fields count from the
    // last ')'.
    let mut fields = text.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    Some(Stat { state, ppid, pgid })
}

/// Alive and not a zombie.
pub fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z')
}

/// The variables a process started with (not what it set later), as `NAME=value`.
pub fn environ(pid: i32) -> Vec<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|bytes| {
            bytes
                .split(|&b| b == 0)
                .filter(|var| !var.is_empty())
                .map(<[u8]>::to_vec)
                .collect()
        })
        .unwrap_or_default()
}

/// A process's resident memory in bytes (VmRSS).
pub fn rss(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Every process's parent, read once.
pub fn parents() -> HashMap<i32, i32> {
    pids()
        .into_iter()
        .filter_map(|pid| Some((pid, stat(pid)?.ppid)))
        .collect()
}

/// The processes whose parent is `parent`.
pub fn children_of(parent: i32) -> Vec<i32> {
    parents()
        .into_iter()
        .filter(|&(_, ppid)| ppid == parent)
        .map(|(pid, _)| pid)
        .collect()
}

/// Whether `pid` descends from `root`, by the `parents` table (bounded against cycles).
pub fn descends(pid: i32, root: i32, parents: &HashMap<i32, i32>) -> bool {
    let mut at = pid;
    for _ in 0..64 {
        match parents.get(&at) {
            Some(&up) if up == root => return true,
            Some(&up) if up > 1 => at = up,
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_counts_fields_from_the_last_parenthesis() {
        let stat = parse_stat("42 (a) b (c)) S 7 42 42 0").unwrap();
        assert_eq!(
            stat,
            Stat {
                state: 'S',
                ppid: 7,
                pgid: 42
            }
        );
        let me = std::process::id() as i32;
        assert!(alive(me));
        assert!(descends(me, stat_of_me().ppid, &parents()));
    }

    fn stat_of_me() -> Stat {
        stat(std::process::id() as i32).unwrap()
    }
}
