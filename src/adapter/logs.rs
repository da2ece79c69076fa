//! Each job's recent output, on disk: `STATE_DIR/logs/NAME.log` holds its runs' last
//! lines, one per line (`AT RUN_ID STREAM TEXT`), and is moved to `NAME.log.old` once it
//! passes `ROTATE_AT`, so a job keeps at most twice that. Never synced: these are for
//! reading what a run printed, not a record that must survive a power cut. Readable
//! while jobd is down.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use log::error;

use crate::model::record::{LogLine, Stream};

const DIR: &str = "logs";
/// A job's log file is rotated past this many bytes.
pub const ROTATE_AT: u64 = 256 * 1024;
/// Files kept open at once, for jobs whose runs write now.
const OPEN_AT_MOST: usize = 64;

/// The per-job log files, as jobd writes them.
#[derive(Debug)]
pub struct Rings {
    dir: PathBuf,
    open: HashMap<String, (File, u64)>,
    /// Set while writing fails, so that the error is logged once.
    failing: bool,
}

impl Rings {
    pub fn open(state_dir: &Path) -> Rings {
        let dir = state_dir.join(DIR);
        if let Err(e) = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
        {
            error!("cannot create {}: {e}", dir.display());
        }
        Rings {
            dir,
            open: HashMap::new(),
            failing: false,
        }
    }

    /// Keep `line` in its job's file. A file that cannot be written is logged once
    /// while writing fails; the run goes on.
    pub fn append(&mut self, line: &LogLine) {
        let written = self.write(line);
        match written {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                error!(
                    "cannot keep {}'s output in {}: {e}; `jobctl logs` will miss lines",
                    line.job,
                    self.dir.display()
                );
            }
            Err(_) => {}
        }
    }

    fn write(&mut self, line: &LogLine) -> io::Result<()> {
        if !self.open.contains_key(&line.job) {
            if self.open.len() >= OPEN_AT_MOST {
                self.open.clear();
            }
            let file = open_append(&path(&self.dir, &line.job))?;
            let size = file.metadata()?.len();
            self.open.insert(line.job.clone(), (file, size));
        }
        let (file, size) = self.open.get_mut(&line.job).expect("just opened");
        let text = format!(
            "{} {} {} {}\n",
            line.at,
            line.run_id,
            line.stream.word(),
            line.text.replace('\n', " ")
        );
        file.write_all(text.as_bytes())?;
        *size += text.len() as u64;
        if *size > ROTATE_AT {
            let current = path(&self.dir, &line.job);
            self.open.remove(&line.job);
            fs::rename(&current, current.with_extension("log.old"))?;
        }
        Ok(())
    }

    /// The job has no run writing now: its file need not stay open.
    pub fn close(&mut self, job: &str) {
        self.open.remove(job);
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

fn path(dir: &Path, job: &str) -> PathBuf {
    dir.join(format!("{job}.log"))
}

/// The last `count` lines of `job` (of its run `run_id` only, if given), oldest first,
/// from the files in `state_dir`. Reads at most the two files of one job.
pub fn last(state_dir: &Path, job: &str, run_id: Option<&str>, count: usize) -> Vec<LogLine> {
    let dir = state_dir.join(DIR);
    let current = path(&dir, job);
    let mut lines = Vec::new();
    for file in [current.with_extension("log.old"), current] {
        lines.extend(read(&file, job).filter(|l| run_id.is_none_or(|id| l.run_id == id)));
    }
    let skip = lines.len().saturating_sub(count);
    lines.split_off(skip)
}

/// Where a log file ends, to follow what is appended after.
pub fn end_of(state_dir: &Path, job: &str) -> u64 {
    fs::metadata(path(&state_dir.join(DIR), job)).map_or(0, |m| m.len())
}

/// The lines appended to `job`'s file after byte `from` (from its start if it was
/// rotated meanwhile), and where it now ends.
pub fn after(state_dir: &Path, job: &str, from: u64) -> (Vec<LogLine>, u64) {
    let file = path(&state_dir.join(DIR), job);
    let Ok(mut handle) = File::open(&file) else {
        return (Vec::new(), 0);
    };
    let len = handle.metadata().map_or(0, |m| m.len());
    let start = if len < from { 0 } else { from };
    if handle.seek(SeekFrom::Start(start)).is_err() {
        return (Vec::new(), from);
    }
    let mut text = Vec::new();
    let _ = handle.take(4 * ROTATE_AT).read_to_end(&mut text);
    // A line still being written waits for the next look.
    let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let lines = text[..whole]
        .split(|&b| b == b'\n')
        .filter_map(|line| parse(&String::from_utf8_lossy(line), job))
        .collect();
    (lines, start + whole as u64)
}

fn read(file: &Path, job: &str) -> impl Iterator<Item = LogLine> {
    let reader = File::open(file).ok().map(BufReader::new);
    let job = job.to_string();
    reader
        .into_iter()
        .flat_map(|r| r.split(b'\n'))
        .map_while(Result::ok)
        .filter_map(move |line| parse(&String::from_utf8_lossy(&line), &job))
}

fn parse(line: &str, job: &str) -> Option<LogLine> {
    let mut parts = line.splitn(4, ' ');
    let at = parts.next()?.to_string();
    let run_id = parts.next()?.to_string();
    let stream = match parts.next()? {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    Some(LogLine {
        at,
        job: job.to_string(),
        run_id,
        stream,
        text: parts.next().unwrap_or_default().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(run_id: &str, text: &str) -> LogLine {
        LogLine {
            at: "2027-01-15T08:00:00.000000Z".into(),
            job: "job".into(),
            run_id: run_id.into(),
            stream: Stream::Stdout,
            text: text.into(),
        }
    }

    #[test]
    fn lines_are_kept_per_job_rotated_and_read_back_by_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut rings = Rings::open(dir.path());
        rings.append(&line("r-1", "first"));
        rings.append(&line("r-2", "second with  spaces"));
        rings.append(&line("r-1", "third"));
        let all = last(dir.path(), "job", None, 10);
        let texts: Vec<_> = all.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["first", "second with  spaces", "third"]);
        let run: Vec<_> = last(dir.path(), "job", Some("r-1"), 10)
            .into_iter()
            .map(|l| l.text)
            .collect();
        assert_eq!(run, ["first", "third"]);
        assert_eq!(last(dir.path(), "job", None, 1)[0].text, "third");
        let end = end_of(dir.path(), "job");
        rings.append(&line("r-3", "later"));
        let (new, _) = after(dir.path(), "job", end);
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].text, "later");
        // Past the bound the file moves aside; the two together keep the recent lines.
        let big = "x".repeat(1000);
        for _ in 0..600 {
            rings.append(&line("r-4", &big));
        }
        let current = fs::metadata(dir.path().join("logs/job.log")).unwrap().len();
        let old = fs::metadata(dir.path().join("logs/job.log.old"))
            .unwrap()
            .len();
        assert!(current <= ROTATE_AT + 2000 && old <= ROTATE_AT + 2000);
        assert_eq!(last(dir.path(), "job", None, 5).len(), 5);
        assert!(last(dir.path(), "nothing", None, 5).is_empty());
    }
}
