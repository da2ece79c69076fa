//! A child's output, cut into lines for the log, with bounded memory and log volume.

use std::time::{Duration, Instant};

/// A longer line is logged in pieces of this size: a child that never writes a newline
/// costs jobd this much memory, not more.
pub const MAX_LINE: usize = 4096;

/// Lines logged per run per second; beyond that, lines are counted and dropped so that a
/// flooding child cannot drown the journal or keep jobd busy formatting.
pub const MAX_LINES_PER_SECOND: u32 = 1000;

/// The unfinished last line of one stream.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Feed bytes; `emit` gets every complete line (without its newline), and pieces of
    /// lines longer than `MAX_LINE`.
    pub fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(&[u8])) {
        while let Some(newline) = data.iter().position(|&b| b == b'\n') {
            let (line, rest) = data.split_at(newline);
            if self.partial.is_empty() {
                for piece in line.chunks(MAX_LINE) {
                    emit(piece);
                }
                if line.is_empty() {
                    emit(line);
                }
            } else {
                self.append(line, &mut emit);
                emit(&self.partial);
                self.partial.clear();
            }
            data = &rest[1..];
        }
        self.append(data, &mut emit);
    }

    fn append(&mut self, mut data: &[u8], emit: &mut impl FnMut(&[u8])) {
        while self.partial.len() + data.len() > MAX_LINE {
            let take = MAX_LINE - self.partial.len();
            self.partial.extend_from_slice(&data[..take]);
            emit(&self.partial);
            self.partial.clear();
            data = &data[take..];
        }
        self.partial.extend_from_slice(data);
    }

    /// The stream ended: emit what is left of an unterminated last line.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(&self.partial);
            self.partial.clear();
        }
    }
}

/// Lines of a run's output kept for `jobctl history` when it fails.
pub const TAIL_LINES: usize = 20;
/// Each kept line is cut to this many bytes.
const TAIL_LINE_BYTES: usize = 1024;

/// The last lines a run wrote, bounded in count and size.
#[derive(Debug, Default)]
pub struct Tail {
    lines: std::collections::VecDeque<String>,
}

impl Tail {
    pub fn push(&mut self, line: &[u8]) {
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        let line = &line[..line.len().min(TAIL_LINE_BYTES)];
        self.lines
            .push_back(String::from_utf8_lossy(line).into_owned());
    }

    pub fn into_lines(self) -> Vec<String> {
        self.lines.into()
    }
}

/// How many lines a run may still log in the current second.
#[derive(Debug)]
pub struct LogBudget {
    window_start: Instant,
    used: u32,
    dropped: u64,
}

impl LogBudget {
    pub fn new(now: Instant) -> LogBudget {
        LogBudget {
            window_start: now,
            used: 0,
            dropped: 0,
        }
    }

    /// Whether one more line may be logged. When a new second starts after lines were
    /// dropped, returns how many, for one summary line.
    pub fn take(&mut self, now: Instant) -> (bool, Option<u64>) {
        let mut report = None;
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.used = 0;
            report = self.flush();
        }
        if self.used < MAX_LINES_PER_SECOND {
            self.used += 1;
            (true, report)
        } else {
            self.dropped += 1;
            (false, report)
        }
    }

    /// Lines dropped and not yet reported.
    pub fn flush(&mut self) -> Option<u64> {
        let dropped = std::mem::take(&mut self.dropped);
        (dropped > 0).then_some(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buffer = Lines::default();
        for chunk in chunks {
            buffer.push(chunk, |line| out.push(line.to_vec()));
        }
        buffer.finish(|line| out.push(line.to_vec()));
        out
    }

    #[test]
    fn splits_lines_across_reads() {
        assert_eq!(
            lines(&[b"one\ntw", b"o\n\nthr", b"ee"]),
            [
                b"one".to_vec(),
                b"two".to_vec(),
                b"".to_vec(),
                b"three".to_vec()
            ]
        );
    }

    #[test]
    fn splits_overlong_lines_and_holds_at_most_max_line() {
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let out = lines(&[&long[..100], &long[100..], b"\nend\n"]);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].len(), MAX_LINE);
        assert_eq!(out[1].len(), MAX_LINE);
        assert_eq!(out[2].len(), 10);
        assert_eq!(out[3], b"end");
        let one_read = lines(&[&long, b"\n"]);
        assert_eq!(
            one_read.iter().map(Vec::len).collect::<Vec<_>>(),
            [MAX_LINE, MAX_LINE, 10]
        );
    }

    #[test]
    fn budget_drops_past_the_limit_and_reports_once() {
        let start = Instant::now();
        let mut budget = LogBudget::new(start);
        for _ in 0..MAX_LINES_PER_SECOND {
            assert_eq!(budget.take(start), (true, None));
        }
        assert_eq!(budget.take(start), (false, None));
        assert_eq!(budget.take(start), (false, None));
        assert_eq!(budget.take(start + Duration::from_secs(1)), (true, Some(2)));
        assert_eq!(budget.flush(), None);
    }
}
