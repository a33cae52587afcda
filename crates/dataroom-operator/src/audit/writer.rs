use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use thiserror::Error;

use super::record::redact;
use super::{Entry, GENESIS, Record};

#[derive(Debug, Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("audit log {path}: the last record is damaged ({why}); run `dataroom-operator audit verify`")]
    DamagedHead { path: PathBuf, why: String },
    #[error(
        "audit log {path}: appends are refused since a write failed ({why}), until the log is whole again"
    )]
    Broken { path: PathBuf, why: String },
}

/// The append side of the log. Appends are serialised and each is on disk (fsync) before
/// `append` returns, so an operation is never reported done ahead of its record.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Mutex<Writer>>,
    /// The latest checkpoint signed and stored of this log (by this process), for those who show it.
    checkpoint: Arc<std::sync::RwLock<Option<super::checkpoint::Checkpoint>>>,
}

/// What the writer needs of its file; a test double fails it on demand.
trait LogFile: Read + Write + Seek + Send {
    fn set_len(&self, len: u64) -> std::io::Result<()>;
    fn sync_data(&self) -> std::io::Result<()>;
}

impl LogFile for File {
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        File::set_len(self, len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        File::sync_data(self)
    }
}

struct Writer {
    path: PathBuf,
    file: Box<dyn LogFile>,
    seq: u64,
    head: String,
    /// The log's length up to its last record known to be on disk: what a failed write is cut to.
    good_len: u64,
    /// Why the last write failed, until the log has been cut back and its head read again.
    broken: Option<String>,
}

impl AuditLog {
    /// Notes `checkpoint` as the latest stored.
    pub fn checkpointed(&self, checkpoint: super::checkpoint::Checkpoint) {
        *self.checkpoint.write().unwrap() = Some(checkpoint);
    }

    /// The latest checkpoint this process stored, if any.
    pub fn checkpoint(&self) -> Option<super::checkpoint::Checkpoint> {
        self.checkpoint.read().unwrap().clone()
    }

    /// Opens (or creates) the log and finds its head. A torn last line (a crash mid-write, never
    /// acknowledged) is cut off; a last record that does not hash correctly stops the start.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new().read(true).append(true).create(true).open(path).map_err(io)?;
        Self::open_file(path, Box::new(file))
    }

    fn open_file(path: &Path, mut file: Box<dyn LogFile>) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io { path: path.to_path_buf(), source };
        let len = file.seek(SeekFrom::End(0)).map_err(io)?;
        let (good_len, last) = last_line(file.as_mut()).map_err(io)?;
        if good_len < len {
            tracing::warn!(path = %path.display(), "audit log ends in a torn record; cutting it off");
            file.set_len(good_len).map_err(io)?;
        }
        let (seq, head) = match last {
            None => (0, GENESIS.to_string()),
            Some(line) => head_of(&line).map_err(|why| AuditError::DamagedHead { path: path.into(), why })?,
        };
        let writer = Writer { path: path.to_path_buf(), file, seq, head, good_len, broken: None };
        Ok(Self { inner: Arc::new(Mutex::new(writer)), checkpoint: Arc::default() })
    }

    /// Appends one record and waits until it is on disk.
    pub async fn append(&self, entry: Entry) -> Result<Record, AuditError> {
        let inner = self.inner.clone();
        let append = move || inner.lock().unwrap().append(entry);
        tokio::task::spawn_blocking(append).await.expect("audit append does not panic")
    }

    /// Sequence number and hash of the last record.
    pub fn head(&self) -> (u64, String) {
        let writer = self.inner.lock().unwrap();
        (writer.seq, writer.head.clone())
    }

    pub fn path(&self) -> PathBuf {
        self.inner.lock().unwrap().path.clone()
    }

    /// Verifies the records acknowledged so far (blocking: run it off the async threads). Reads
    /// the file only up to the length the writer has acknowledged, so that a write under way is
    /// not taken for a torn record, and reports a file shorter than that.
    pub fn verify(&self) -> std::io::Result<super::Report> {
        let (path, len) = {
            let writer = self.inner.lock().unwrap();
            (writer.path.clone(), writer.good_len)
        };
        super::verify_prefix(&path, len)
    }
}

/// Sequence number and hash of a record that must be whole.
fn head_of(line: &str) -> Result<(u64, String), String> {
    match Record::open(line)? {
        (record, true) => Ok((record.seq, record.hash)),
        (_, false) => Err("its hash does not match its contents".into()),
    }
}

impl Writer {
    /// After a failed write nothing is appended until `repair` has cut the log back to its last
    /// good record and read that record again: a partial line (a full disk) would break the chain,
    /// and a record whose fsync failed, left in place, would share its sequence number with the next.
    fn append(&mut self, entry: Entry) -> Result<Record, AuditError> {
        if self.broken.is_some() {
            self.repair()?;
        }
        let mut params = entry.params;
        redact(&mut params);
        let mut record = Record {
            seq: self.seq + 1,
            time: jiff::Timestamp::now().to_string(),
            actor: entry.actor,
            action: entry.action,
            target: entry.target,
            params,
            outcome: entry.outcome,
            detail: entry.detail,
            prev: self.head.clone(),
            hash: String::new(),
        };
        let mut line = record.seal();
        line.push('\n');
        let written = self.file.write_all(line.as_bytes()).and_then(|()| self.file.sync_data());
        if let Err(source) = written {
            tracing::error!(path = %self.path.display(), error = %source, "audit write failed; cutting the log back");
            self.broken = Some(source.to_string());
            // At once if it can be done (a full disk has room again once the partial line is gone);
            // otherwise the next append tries again before it writes.
            let _ = self.repair();
            return Err(AuditError::Io { path: self.path.clone(), source });
        }
        self.good_len += line.len() as u64;
        self.seq = record.seq;
        self.head = record.hash.clone();
        Ok(record)
    }

    /// Cuts the log to its last good length, makes the cut durable and checks that the log now
    /// ends in the record this writer last acknowledged. Until that succeeds, appends are refused.
    fn repair(&mut self) -> Result<(), AuditError> {
        let why = self.broken.clone().unwrap_or_default();
        let broken =
            |detail: String| AuditError::Broken { path: self.path.clone(), why: format!("{why}; {detail}") };
        self.file.set_len(self.good_len).map_err(|e| broken(format!("cutting back: {e}")))?;
        self.file.sync_data().map_err(|e| broken(format!("syncing the cut: {e}")))?;
        let (len, last) = last_line(self.file.as_mut()).map_err(|e| broken(format!("reading back: {e}")))?;
        let head = match last {
            None => (0, GENESIS.to_string()),
            Some(line) => head_of(&line).map_err(|e| broken(format!("the last record: {e}")))?,
        };
        if len != self.good_len || head != (self.seq, self.head.clone()) {
            return Err(broken(format!("the log no longer ends in record {}", self.seq)));
        }
        tracing::info!(path = %self.path.display(), seq = self.seq, "audit log cut back to its last good record");
        self.broken = None;
        Ok(())
    }
}

/// Length of the file up to its last newline, and the last complete line, read from the end.
fn last_line(file: &mut dyn LogFile) -> std::io::Result<(u64, Option<String>)> {
    let len = file.seek(SeekFrom::End(0))?;
    let mut window = 4096u64;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut tail = Vec::new();
        file.read_to_end(&mut tail)?;
        let Some(end) = tail.iter().rposition(|b| *b == b'\n') else {
            if start == 0 {
                return Ok((0, None));
            }
            window *= 4;
            continue;
        };
        let complete_len = start + end as u64 + 1;
        match tail[..end].iter().rposition(|b| *b == b'\n') {
            Some(begin) => {
                let line = String::from_utf8_lossy(&tail[begin + 1..end]).into_owned();
                return Ok((complete_len, Some(line)));
            }
            None if start == 0 => {
                return Ok((complete_len, Some(String::from_utf8_lossy(&tail[..end]).into_owned())));
            }
            None => window *= 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::audit::{Outcome, verify_file};

    /// The log's file, failing on demand: fsync, or a write that gets half its bytes out before
    /// the disk is full.
    struct Flaky {
        file: File,
        fail_sync: Arc<AtomicBool>,
        fill_disk: Arc<AtomicBool>,
        full: bool,
    }

    impl Read for Flaky {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.file.read(buf)
        }
    }

    impl Seek for Flaky {
        fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
            self.file.seek(pos)
        }
    }

    impl Write for Flaky {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if std::mem::take(&mut self.full) {
                return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
            }
            if self.fill_disk.swap(false, Ordering::SeqCst) {
                self.full = true;
                return self.file.write(&buf[..buf.len() / 2]);
            }
            self.file.write(buf)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            self.file.flush()
        }
    }

    impl LogFile for Flaky {
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.file.set_len(len)
        }

        fn sync_data(&self) -> std::io::Result<()> {
            match self.fail_sync.load(Ordering::SeqCst) {
                true => Err(std::io::Error::other("injected fsync failure")),
                false => self.file.sync_data(),
            }
        }
    }

    struct Rig {
        _dir: tempfile::TempDir,
        path: PathBuf,
        log: AuditLog,
        fail_sync: Arc<AtomicBool>,
        fill_disk: Arc<AtomicBool>,
    }

    fn rig() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let file = OpenOptions::new().read(true).append(true).create(true).open(&path).unwrap();
        let (fail_sync, fill_disk) = (Arc::default(), Arc::default());
        let (fail, fill) = (Arc::clone(&fail_sync), Arc::clone(&fill_disk));
        let flaky = Flaky { file, fail_sync: fail, fill_disk: fill, full: false };
        let log = AuditLog::open_file(&path, Box::new(flaky)).unwrap();
        Rig { _dir: dir, path, log, fail_sync, fill_disk }
    }

    fn append(log: &AuditLog, action: &str) -> Result<u64, AuditError> {
        let entry = Entry::new("test", action, "ec2instance/default/web", Outcome::Success);
        log.inner.lock().unwrap().append(entry).map(|record| record.seq)
    }

    /// Each record's sequence number and action, and whether the chain verifies.
    fn on_disk(path: &Path) -> (Vec<(u64, String)>, bool) {
        let text = std::fs::read_to_string(path).unwrap();
        let records = text.lines().map(|l| Record::open(l).unwrap().0).map(|r| (r.seq, r.action)).collect();
        (records, verify_file(path).unwrap().is_intact())
    }

    #[test]
    fn verify_checks_what_was_acknowledged_and_names_a_cut_end() {
        use std::io::Write;
        let rig = rig();
        for action in ["one", "two"] {
            append(&rig.log, action).unwrap();
        }
        // A write under way: part of a line past what the writer acknowledged.
        let mut file = OpenOptions::new().append(true).open(&rig.path).unwrap();
        file.write_all(b"{\"seq\":3,\"ti").unwrap();
        assert!(!verify_file(&rig.path).unwrap().is_intact(), "the whole file ends mid-record");
        let report = rig.log.verify().unwrap();
        assert!(report.is_intact() && report.records == 2, "{:?}", report.problems);
        // A file cut back below what was acknowledged has lost records.
        let acknowledged = rig.log.inner.lock().unwrap().good_len;
        file.set_len(acknowledged / 2).unwrap();
        let problems = rig.log.verify().unwrap().problems;
        assert!(problems.iter().any(|p| p.message.contains("records were cut from its end")), "{problems:?}");
    }

    #[test]
    fn a_failed_fsync_leaves_no_record_and_no_reused_sequence_number() {
        let rig = rig();
        assert_eq!(append(&rig.log, "first").unwrap(), 1);
        rig.fail_sync.store(true, Ordering::SeqCst);
        assert!(matches!(append(&rig.log, "unsynced"), Err(AuditError::Io { .. })));
        // The cut back cannot be made durable while fsync fails: appends stay refused.
        assert!(matches!(append(&rig.log, "refused"), Err(AuditError::Broken { .. })));
        assert_eq!(rig.log.head().0, 1);
        rig.fail_sync.store(false, Ordering::SeqCst);
        assert_eq!(append(&rig.log, "after").unwrap(), 2);
        let expected = vec![(1, "first".to_string()), (2, "after".to_string())];
        assert_eq!(on_disk(&rig.path), (expected, true));
    }

    #[test]
    fn a_write_cut_short_by_a_full_disk_leaves_the_log_whole() {
        let rig = rig();
        append(&rig.log, "first").unwrap();
        rig.fill_disk.store(true, Ordering::SeqCst);
        assert!(matches!(append(&rig.log, "half written"), Err(AuditError::Io { .. })));
        // Cut back at once: no partial line stays behind to break the chain or the next start.
        assert_eq!(on_disk(&rig.path), (vec![(1, "first".to_string())], true));
        assert_eq!(append(&rig.log, "after").unwrap(), 2);
        assert_eq!(on_disk(&rig.path).0.last().unwrap(), &(2, "after".to_string()));
        assert!(AuditLog::open(&rig.path).is_ok());
    }

    #[test]
    fn a_log_changed_beneath_a_broken_writer_is_not_appended_to() {
        let rig = rig();
        append(&rig.log, "first").unwrap();
        rig.fail_sync.store(true, Ordering::SeqCst);
        append(&rig.log, "unsynced").unwrap_err();
        // Someone else rewrites the file meanwhile: its last record is no longer the writer's head.
        let other = rig.path.with_extension("other");
        let replacement = AuditLog::open(&other).unwrap();
        append(&replacement, "forged").unwrap();
        append(&replacement, "forged again").unwrap();
        std::fs::copy(&other, &rig.path).unwrap();
        rig.fail_sync.store(false, Ordering::SeqCst);
        assert!(matches!(append(&rig.log, "after"), Err(AuditError::Broken { .. })));
    }
}
