use std::io::BufRead;
use std::path::Path;

use super::{GENESIS, Record};

/// One break in the chain, located by line number (1-based) and, where known, sequence number.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub line: usize,
    pub seq: Option<u64>,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub records: u64,
    /// Sequence number and hash of the last record read.
    pub head: Option<(u64, String)>,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the log at `path`, reading one record at a time (memory does not grow with the log).
pub fn verify_file(path: &Path) -> std::io::Result<Report> {
    verify_prefix(path, u64::MAX)
}

/// Checks the first `len` bytes of the log at `path`: what its writer has acknowledged, when the
/// writer is live (a write under way, or one being cut back after a full disk, lies beyond).
/// A file shorter than `len` has lost records from its end.
pub fn verify_prefix(path: &Path, len: u64) -> std::io::Result<Report> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut reader = std::io::BufReader::new(file.take(len));
    let mut chain = Chain::default();
    let (mut buf, mut read) = (Vec::new(), 0u64);
    // Read raw lines so that a missing final newline (a torn write) is visible.
    while reader.read_until(b'\n', &mut buf)? > 0 {
        read += buf.len() as u64;
        if !chain.next(&String::from_utf8_lossy(&buf)) {
            break;
        }
        buf.clear();
    }
    if len != u64::MAX && read < len {
        let message = format!(
            "the log ends at byte {read}, before the {len} bytes its writer acknowledged: records were cut from its end"
        );
        chain.report.problems.push(Problem { line: chain.line + 1, seq: None, message });
    }
    Ok(chain.report)
}

/// Checks a log given as its lines (each with its trailing newline, as read from the file).
/// After a problem the check resumes from the offending record, so every break is reported.
pub fn verify_lines(lines: &[String]) -> Report {
    let mut chain = Chain::default();
    for raw in lines {
        if !chain.next(raw) {
            break;
        }
    }
    chain.report
}

/// The check so far: what the next record must be.
pub(crate) struct Chain {
    pub(crate) report: Report,
    line: usize,
    expected_seq: u64,
    expected_prev: String,
}

impl Default for Chain {
    fn default() -> Self {
        Chain { report: Report::default(), line: 0, expected_seq: 1, expected_prev: GENESIS.to_string() }
    }
}

impl Chain {
    /// Checks the next line; false when nothing after it can be checked (a torn last line).
    pub(crate) fn next(&mut self, raw: &str) -> bool {
        self.line += 1;
        let line = self.line;
        let problems = &mut self.report.problems;
        let mut problem = |seq, message: String| problems.push(Problem { line, seq, message });
        let Some(text) = raw.strip_suffix('\n') else {
            problem(None, "the last line is incomplete: the log was truncated mid-record".into());
            return false;
        };
        let (record, intact) = match Record::open(text) {
            Ok(opened) => opened,
            Err(why) => {
                problem(None, format!("not a well-formed record ({why}): inserted or damaged"));
                return true;
            }
        };
        let seq = Some(record.seq);
        if !intact {
            problem(seq, format!("record {} was edited: its hash does not match its contents", record.seq));
        }
        let expected_seq = self.expected_seq;
        if record.seq < expected_seq {
            problem(
                seq,
                format!("record {} is out of order or repeated (expected {expected_seq})", record.seq),
            );
        } else if record.seq > expected_seq {
            let missing = record.seq - expected_seq;
            problem(
                seq,
                format!("{missing} record(s) missing before record {} (expected {expected_seq})", record.seq),
            );
        } else if record.prev != self.expected_prev {
            problem(
                seq,
                format!(
                    "record {} does not follow the record before it: one was inserted, removed or replaced",
                    record.seq
                ),
            );
        }
        self.expected_seq = record.seq + 1;
        self.expected_prev = record.hash.clone();
        self.report.records += 1;
        self.report.head = Some((record.seq, record.hash));
        true
    }
}
