//! What survives a restart: the history of runs, in `state_dir/history.jsonl`.
//!
//! Append-only, one JSON object per line, so a crash at any moment leaves every line
//! but perhaps a torn last one readable (and that one is skipped). When the file grows
//! past a bound it is rewritten with only the runs kept, to a temporary file renamed
//! over it.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use log::{error, info};

use crate::leaf::files::{self, Durability};
use crate::model::record::{RunInfo, Verdict};

/// Runs kept per job.
pub const RUNS_KEPT: usize = 100;
/// The history file is compacted when it grows past this.
const COMPACT_AT: u64 = 8 << 20;
const FILE: &str = "history.jsonl";

/// The most recent runs of each job, newest last, mirrored to the state directory.
#[derive(Debug, Default)]
pub struct History {
    by_job: HashMap<String, VecDeque<RunInfo>>,
    file: Option<PathBuf>,
    bytes: u64,
    /// Set while writing fails (a full or read-only disk), so the error is logged once.
    failing: bool,
    /// The error of the last failed write, while writing fails.
    error: Option<String>,
    /// Twice the size of the last compaction: a history whose kept runs alone pass
    /// `COMPACT_AT` must not be rewritten at every run.
    compact_at: u64,
    /// The file may end in a torn line (a write cut short, a crash mid-write): the
    /// next record starts on a line of its own, so the two are not read as one.
    torn: bool,
}

impl History {
    /// Load the history kept in `state_dir`, creating the folder if needed. A history
    /// that cannot be read starts empty; one that cannot be written is logged and
    /// retried at every run.
    pub fn open(state_dir: &Path) -> History {
        if let Err(e) = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(state_dir)
        {
            error!(
                "cannot create the state directory {}: {e}",
                state_dir.display()
            );
        }
        let path = state_dir.join(FILE);
        let mut history = History {
            file: Some(path.clone()),
            ..History::default()
        };
        for run in read(&path) {
            history.keep(run);
        }
        history.bytes = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        // Checked again before the next write: only then does it matter.
        history.torn = true;
        history
    }

    fn keep(&mut self, run: RunInfo) {
        let runs = self.by_job.entry(run.job.clone()).or_default();
        if runs.len() == RUNS_KEPT {
            runs.pop_front();
        }
        runs.push_back(run);
    }

    /// Record an ended run, in memory and on disk.
    pub fn push(&mut self, run: RunInfo) {
        if self.file.is_some() {
            let mut line = serde_json::to_string(&run).expect("a run serializes");
            line.push('\n');
            self.write(&line);
        }
        self.keep(run);
        if self.bytes > self.compact_at.max(COMPACT_AT) {
            self.compact();
        }
    }

    fn write(&mut self, line: &str) {
        let Some(path) = &self.file else { return };
        let text = if self.torn && !ends_with_newline(path) {
            format!("\n{line}")
        } else {
            line.to_string()
        };
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut file| file.write_all(text.as_bytes()));
        // A failed write may have left part of the line behind.
        self.torn = written.is_err();
        self.error = written
            .as_ref()
            .err()
            .map(|e| format!("cannot write the run history to {}: {e}", path.display()));
        match written {
            Ok(()) => {
                self.bytes += text.len() as u64;
                if self.failing {
                    info!("the run history in {} is written again", path.display());
                    self.failing = false;
                }
            }
            Err(e) if !self.failing => {
                error!(
                    "cannot write the run history to {}: {e}; jobs go on",
                    path.display()
                );
                self.failing = true;
            }
            Err(_) => {}
        }
    }

    fn compact(&mut self) {
        if self.failing {
            return;
        }
        let Some(path) = self.file.clone() else {
            return;
        };
        let mut text = String::new();
        for run in self.by_job.values().flatten() {
            text.push_str(&serde_json::to_string(run).expect("a run serializes"));
            text.push('\n');
        }
        let replaced = files::replace(&path, text.as_bytes(), 0o600, Durability::Synced);
        match replaced {
            Ok(()) => {
                self.bytes = text.len() as u64;
                self.compact_at = self.bytes.saturating_mul(2);
            }
            Err(e) => error!("cannot compact the run history {}: {e}", path.display()),
        }
    }

    /// Why the history cannot be written now, if it cannot.
    pub fn problem(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The runs of one job, oldest first.
    pub fn runs(&self, job: &str) -> impl DoubleEndedIterator<Item = &RunInfo> {
        self.by_job.get(job).into_iter().flatten()
    }

    pub fn last(&self, job: &str) -> Option<&RunInfo> {
        self.by_job.get(job).and_then(|runs| runs.back())
    }

    /// When the last of `job`'s kept runs that succeeded ended.
    pub fn last_success(&self, job: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        self.runs(job)
            .rev()
            .find(|run| run.outcome == Verdict::Success)
            .and_then(|run| chrono::DateTime::parse_from_rfc3339(&run.ended_at).ok())
            .map(|at| at.to_utc())
    }

    /// Every job's runs, newest last overall (by start), at most `limit`.
    pub fn recent(&self, job: Option<&str>, limit: usize) -> Vec<RunInfo> {
        let mut runs: Vec<&RunInfo> = match job {
            Some(job) => self.runs(job).collect(),
            None => self.by_job.values().flatten().collect(),
        };
        runs.sort_by(|a, b| a.started_at.cmp(&b.started_at));
        let skip = runs.len().saturating_sub(limit);
        runs.into_iter().skip(skip).cloned().collect()
    }
}

/// Every readable run in a history file; a torn or damaged line is skipped.
pub fn read(path: &Path) -> Vec<RunInfo> {
    let Ok(file) = File::open(path) else {
        return Vec::new();
    };
    // By bytes, not `lines()`: a write cut short in the middle of a character leaves a
    // line that is not UTF-8, and the lines after it must still be read.
    BufReader::new(file)
        .split(b'\n')
        .map_while(io::Result::ok)
        .filter_map(|line| serde_json::from_slice(&line).ok())
        .collect()
}

/// The history as kept on disk, for `jobctl` when jobd is not running.
pub fn load(state_dir: &Path) -> History {
    let mut history = History::default();
    for run in read(&state_dir.join(FILE)) {
        history.keep(run);
    }
    history
}

/// Whether the file at `path` is empty, missing, or ends with a newline.
fn ends_with_newline(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = File::open(path) else {
        return true;
    };
    if file.seek(SeekFrom::End(-1)).is_err() {
        return true;
    }
    let mut last = [0u8; 1];
    file.read_exact(&mut last)
        .map_or(true, |()| last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str) -> RunInfo {
        RunInfo {
            job: "a".into(),
            run_id: id.into(),
            attempt: 1,
            scheduled_at: String::new(),
            started_at: String::new(),
            ended_at: String::new(),
            duration_ms: 0,
            outcome: Verdict::Success,
            exit_code: Some(0),
            signal: None,
            message: String::new(),
            output: Vec::new(),
            host: None,
        }
    }

    #[test]
    fn a_torn_line_hides_nothing_after_it_and_the_next_record_starts_anew() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let line = |id| serde_json::to_string(&run(id)).unwrap();
        // A write cut short in the middle of a two-byte character, not UTF-8.
        let mut bytes = format!("{}\n", line("1")).into_bytes();
        bytes.extend_from_slice(b"{\"job\": \"a\", \"output\": [\"\xc3");
        fs::write(&path, &bytes).unwrap();
        let mut history = History::open(dir.path());
        history.push(run("2"));
        history.push(run("3"));
        let ids: Vec<String> = read(&path).into_iter().map(|r| r.run_id).collect();
        assert_eq!(ids, ["1", "2", "3"]);
    }
}
