//! What survives a restart: the history of runs, in `state_dir/history.jsonl`, and
//! the state directory itself.
//!
//! Append-only, one JSON object per line, so a crash at any moment leaves every line
//! but perhaps a torn last one readable (and that one is skipped). When the file grows
//! past a bound it is rewritten with only the runs kept, to a temporary file renamed
//! over it. The folder and the file are jobd's alone whatever the umask: whoever could
//! write them could forge runs, and so trigger or silence `catch_up` and `alert_after`.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use log::{error, info, warn};
use nix::errno::Errno;
use nix::unistd::{Whence, lseek};

use crate::leaf::files::{self, Durability};
use crate::model::config::Config;
use crate::model::record::{RunInfo, Verdict};

/// Runs kept per job.
pub const RUNS_KEPT: usize = 100;
/// The history file is compacted when it grows past this.
const COMPACT_AT: u64 = 8 << 20;
const FILE: &str = "history.jsonl";
const FILE_MODE: u32 = 0o600;
/// jobd writes no record nearly this long (a run keeps 20 lines of at most 1 KiB): a
/// longer line is damage or forgery, skipped without being held in memory.
const MAX_LINE: usize = 1 << 20;
/// A record that ended or was due later than this past now was not written by this
/// clock: `catch_up` and `alert_after` ignore it. The margin absorbs a small step
/// back of the clock.
const FUTURE_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// The state directory's mode: jobd's alone (0700), or passable (0711) when the spool
/// or a socket that others may use lies inside it. Passable is not listable: every
/// file inside keeps its own mode (the history 0600).
pub fn dir_mode(config: &Config) -> u32 {
    let shared_socket = config.socket_group.is_some() || config.read_group.is_some();
    let inside = |path: &Path| path.starts_with(&config.state_dir);
    if inside(&config.spool.dir) || (shared_socket && inside(&config.socket)) {
        0o711
    } else {
        0o700
    }
}

/// A state directory jobd cannot make safe to use.
#[derive(Debug)]
pub enum StateDirError {
    Create {
        dir: PathBuf,
        error: io::Error,
    },
    /// Others may write it, and jobd may not change its mode.
    Unsafe {
        dir: PathBuf,
        mode: u32,
        owner: u32,
        error: io::Error,
    },
}

impl fmt::Display for StateDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateDirError::Create { dir, error } => write!(
                f,
                "cannot create the state directory {}: {error}",
                dir.display()
            ),
            StateDirError::Unsafe {
                dir,
                mode,
                owner,
                error,
            } => write!(
                f,
                "the state directory {} may be written by others than jobd (mode {mode:o}, owner uid {owner}), \
                 and jobd cannot change its mode ({error}): give it to jobd's user, or `chmod 700 {}`",
                dir.display(),
                dir.display()
            ),
        }
    }
}

impl std::error::Error for StateDirError {}

/// Make the state directory with its mode, or give an existing one its mode, before
/// anything is put in it (the socket, the spool, the history).
pub fn prepare_dir(config: &Config) -> Result<(), StateDirError> {
    let dir = &config.state_dir;
    let mode = dir_mode(config);
    files::create_dirs(dir, mode).map_err(|error| StateDirError::Create {
        dir: dir.clone(),
        error,
    })?;
    let meta = fs::metadata(dir).map_err(|error| StateDirError::Create {
        dir: dir.clone(),
        error,
    })?;
    let was = meta.mode() & 0o7777;
    if was == mode {
        return Ok(());
    }
    match fs::set_permissions(dir, fs::Permissions::from_mode(mode)) {
        Ok(()) => {
            info!(
                "state directory {}: mode set to {mode:o} (was {was:o})",
                dir.display()
            );
            Ok(())
        }
        Err(error) if was & 0o022 != 0 => Err(StateDirError::Unsafe {
            dir: dir.clone(),
            mode: was,
            owner: meta.uid(),
            error,
        }),
        Err(e) => {
            warn!(
                "state directory {}: cannot set its mode to {mode:o} (it is {was:o}): {e}",
                dir.display()
            );
            Ok(())
        }
    }
}

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
    /// Lines over `MAX_LINE` skipped when the file was read.
    overlong: usize,
}

impl History {
    /// Load the history kept in `state_dir` (see `prepare_dir`). A history that cannot
    /// be read starts empty; one that cannot be written is logged and retried at every
    /// run.
    pub fn open(state_dir: &Path) -> History {
        let path = state_dir.join(FILE);
        own_mode(&path);
        let mut history = load(state_dir);
        if history.overlong > 0 {
            warn!(
                "{}: skipped {} line{} over {} MiB (jobd writes none: the file was damaged, or written by someone else)",
                path.display(),
                history.overlong,
                crate::leaf::words::plural(history.overlong),
                MAX_LINE >> 20
            );
        }
        history.file = Some(path.clone());
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
            .mode(FILE_MODE)
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
        let replaced = files::replace(&path, text.as_bytes(), FILE_MODE, Durability::Synced);
        match replaced {
            Ok(()) => {
                self.bytes = text.len() as u64;
                self.compact_at = self.bytes.saturating_mul(2);
            }
            Err(e) => error!("cannot compact the run history {}: {e}", path.display()),
        }
    }

    /// What is wrong with the history, in words: why it cannot be written now, and
    /// lines skipped when it was read.
    pub fn problems(&self) -> Vec<String> {
        let skipped = (self.overlong > 0).then(|| {
            format!(
                "the run history skipped {} line{} over {} MiB when it was read (jobd writes none: the file was damaged, or written by someone else)",
                self.overlong,
                crate::leaf::words::plural(self.overlong),
                MAX_LINE >> 20
            )
        });
        self.error.iter().cloned().chain(skipped).collect()
    }

    /// The runs of one job, oldest first.
    pub fn runs(&self, job: &str) -> impl DoubleEndedIterator<Item = &RunInfo> {
        self.by_job.get(job).into_iter().flatten()
    }

    pub fn last(&self, job: &str) -> Option<&RunInfo> {
        self.by_job.get(job).and_then(|runs| runs.back())
    }

    /// When the latest of `job`'s kept runs that succeeded ended, for `alert_after`.
    /// Records from the future are ignored: a forged one must not silence an alert.
    pub fn last_success(&self, job: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.runs(job)
            .filter(|run| run.outcome == Verdict::Success)
            .filter_map(|run| past(run, now))
            .map(|(_, ended)| ended)
            .max()
    }

    /// The latest instant of `job` that ran, for `catch_up`: the latest, not the last
    /// written, and never one from the future, so that no record can make jobd run
    /// an instant again, or skip one it owes.
    pub fn last_ran(&self, job: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.runs(job)
            .filter_map(|run| past(run, now))
            .map(|(scheduled, _)| scheduled)
            .max()
    }

    /// Every job's runs, newest last overall (by start), at most `limit`.
    /// The job (or task, or hook) of the kept run `run_id`.
    pub fn job_of(&self, run_id: &str) -> Option<&str> {
        self.by_job
            .values()
            .flatten()
            .find(|run| run.run_id == run_id)
            .map(|run| run.job.as_str())
    }

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

/// When a run was due and when it ended, if both are in the past of `now`.
fn past(run: &RunInfo, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let parse = |at: &str| DateTime::parse_from_rfc3339(at).ok().map(|at| at.to_utc());
    let (scheduled, ended) = (parse(&run.scheduled_at)?, parse(&run.ended_at)?);
    let latest = now + FUTURE_MARGIN;
    (scheduled <= latest && ended <= latest).then_some((scheduled, ended))
}

/// The history file is jobd's alone: one made under another umask, or by an older
/// jobd, is given its mode back.
fn own_mode(path: &Path) {
    let Ok(meta) = fs::metadata(path) else {
        return;
    };
    let was = meta.mode() & 0o7777;
    if was == FILE_MODE {
        return;
    }
    match fs::set_permissions(path, fs::Permissions::from_mode(FILE_MODE)) {
        Ok(()) => info!(
            "{}: mode set to {FILE_MODE:o} (was {was:o})",
            path.display()
        ),
        Err(e) => warn!(
            "{}: cannot set its mode to {FILE_MODE:o} (it is {was:o}): {e}",
            path.display()
        ),
    }
}

/// The history as kept on disk: every readable run (a torn or damaged line is
/// skipped) and the count of lines over `MAX_LINE`, which are skipped unread.
pub fn load(state_dir: &Path) -> History {
    let mut history = History::default();
    let Ok(file) = File::open(state_dir.join(FILE)) else {
        return history;
    };
    let mut reader = BufReader::with_capacity(64 << 10, file);
    let mut line = Vec::new();
    loop {
        line.clear();
        // By bytes, not `lines()`: a write cut short in the middle of a character
        // leaves a line that is not UTF-8, and the lines after it must still be read.
        let Ok(read) = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
        else {
            break;
        };
        if read == 0 {
            break;
        }
        if line.last() != Some(&b'\n') && read > MAX_LINE {
            history.overlong += 1;
            if skip_line(&mut reader, &mut line).is_err() {
                break;
            }
            continue;
        }
        if let Ok(run) = serde_json::from_slice(&line) {
            history.keep(run);
        }
    }
    history
}

/// Pass over the rest of an overlong line, to just past its newline or to the end of
/// the file, holding at most a chunk of it in `scratch`. A hole in a sparse file reads
/// as zeros, so it holds no newline: it is jumped over unread (a file extended by a
/// crash, or a forged line that costs nothing to write, must not cost a read of its
/// whole length).
fn skip_line(reader: &mut BufReader<File>, scratch: &mut Vec<u8>) -> io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK];
    loop {
        scratch.clear();
        let read = (&mut *reader)
            .take(CHUNK as u64)
            .read_until(b'\n', scratch)?;
        if read == 0 || scratch.last() == Some(&b'\n') {
            return Ok(());
        }
        if scratch[..] != zeros[..read] {
            continue;
        }
        let at = reader.stream_position()?;
        match lseek(reader.get_ref(), at as i64, Whence::SeekData) {
            // Also when `at` is in data (zeros written out): the buffer is dropped.
            Ok(data) => {
                reader.seek(SeekFrom::Start(data as u64))?;
            }
            // Nothing but a hole up to the end.
            Err(Errno::ENXIO) => {
                reader.seek(SeekFrom::End(0))?;
                return Ok(());
            }
            // No SEEK_DATA on this file system: the offset is unchanged, read on.
            Err(_) => {}
        }
    }
}

/// Whether the file at `path` is empty, missing, or ends with a newline.
fn ends_with_newline(path: &Path) -> bool {
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
        let ids: Vec<String> = load(dir.path())
            .runs("a")
            .map(|r| r.run_id.clone())
            .collect();
        assert_eq!(ids, ["1", "2", "3"]);
    }

    #[test]
    fn a_line_over_the_bound_is_skipped_and_counted_and_the_others_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let line = |id| serde_json::to_string(&run(id)).unwrap();
        let mut bytes = format!("{}\n", line("1")).into_bytes();
        bytes.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
        bytes.push(b'\n');
        // Exactly at the bound, and read: a line is its bytes without the newline.
        let mut padded = line("2").into_bytes();
        padded.resize(MAX_LINE, b' ');
        bytes.extend(padded);
        bytes.push(b'\n');
        bytes.extend(format!("{}\n", line("3")).into_bytes());
        // The last line, over the bound and never ended.
        bytes.extend(std::iter::repeat_n(b'y', 3 * MAX_LINE));
        fs::write(dir.path().join(FILE), &bytes).unwrap();
        let history = History::open(dir.path());
        let ids: Vec<&str> = history.runs("a").map(|r| r.run_id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "3"]);
        assert_eq!(history.overlong, 2);
        let problems = history.problems();
        assert!(
            problems[0].contains("skipped 2 lines over 1 MiB"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_hole_in_a_sparse_file_is_passed_over_and_what_follows_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let line = |id| serde_json::to_string(&run(id)).unwrap();
        let mut file = File::create(&path).unwrap();
        file.write_all(format!("{}\nstart of a long line", line("1")).as_bytes())
            .unwrap();
        // A hole of 64 MiB, then the rest of the line in data, then another record;
        // then a hole to the end.
        let len = file.metadata().unwrap().len();
        file.set_len(len + (64 << 20)).unwrap();
        file.seek(SeekFrom::End(0)).unwrap();
        file.write_all(format!("end of it\n{}\n", line("2")).as_bytes())
            .unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len + (64 << 20)).unwrap();
        drop(file);
        let history = load(dir.path());
        let ids: Vec<&str> = history.runs("a").map(|r| r.run_id.as_str()).collect();
        assert_eq!(ids, ["1", "2"]);
        assert_eq!(history.overlong, 2);
    }

    #[test]
    fn the_state_directory_is_passable_only_when_others_must_pass_through_it() {
        let host = crate::model::config::Host {
            local_zone: Some("UTC".into()),
            ..Default::default()
        };
        let mode = |text: &str| {
            let config =
                crate::model::config::parse(text, Path::new("/app/jobd.yaml"), None, &host)
                    .unwrap();
            dir_mode(&config)
        };
        let jobs = "jobs:\n  a:\n    every: 1s\n    command: [x]\n";
        assert_eq!(mode(jobs), 0o711, "the default spool is inside");
        let outside = format!("spool:\n  dir: /srv/spool\n{jobs}");
        assert_eq!(mode(&outside), 0o700);
        assert_eq!(mode(&format!("read_group: root\n{outside}")), 0o711);
        assert_eq!(
            mode(&format!(
                "socket: /run/j.sock\nsocket_group: root\n{outside}"
            )),
            0o700,
            "the shared socket is elsewhere"
        );
    }

    #[test]
    fn records_from_the_future_count_neither_as_runs_nor_as_successes() {
        let now = DateTime::parse_from_rfc3339("2030-01-01T12:00:00Z")
            .unwrap()
            .to_utc();
        let at = |minutes: i64| {
            crate::leaf::timestamp::precise(now + chrono::TimeDelta::minutes(minutes))
        };
        let record = |id: &str, scheduled: i64, ended: i64, outcome| RunInfo {
            scheduled_at: at(scheduled),
            started_at: at(scheduled),
            ended_at: at(ended),
            outcome,
            ..run(id)
        };
        let mut history = History::default();
        history.push(record("genuine", -10, -9, Verdict::Success));
        history.push(record("forged", 600, 601, Verdict::Success));
        history.push(record("old", -5000, -4999, Verdict::Failure));
        history.push(record("ends later", -3, 300, Verdict::Success));
        let minutes = |at: Option<DateTime<Utc>>| at.map(|at| (at - now).num_minutes());
        assert_eq!(minutes(history.last_success("a", now)), Some(-9));
        assert_eq!(
            minutes(history.last_ran("a", now)),
            Some(-10),
            "the latest, not the last written"
        );
    }
}
