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
}

/// The append side of the log. Appends are serialised and each is on disk (fsync) before
/// `append` returns, so an operation is never reported done ahead of its record.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Mutex<Writer>>,
}

struct Writer {
    path: PathBuf,
    file: File,
    seq: u64,
    head: String,
}

impl AuditLog {
    /// Opens (or creates) the log and finds its head. A torn last line (a crash mid-write, never
    /// acknowledged) is cut off; a last record that does not hash correctly stops the start.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(path).map_err(io)?;
        let (complete_len, last) = last_line(&mut file).map_err(io)?;
        if complete_len < file.metadata().map_err(io)?.len() {
            tracing::warn!(path = %path.display(), "audit log ends in a torn record; cutting it off");
            file.set_len(complete_len).map_err(io)?;
        }
        let (seq, head) = match last {
            None => (0, GENESIS.to_string()),
            Some(line) => match Record::open(&line) {
                Ok((record, true)) => (record.seq, record.hash),
                Ok((_, false)) => {
                    let why = "its hash does not match its contents".to_string();
                    return Err(AuditError::DamagedHead { path: path.to_path_buf(), why });
                }
                Err(why) => {
                    return Err(AuditError::DamagedHead { path: path.to_path_buf(), why });
                }
            },
        };
        let writer = Writer { path: path.to_path_buf(), file, seq, head };
        Ok(Self { inner: Arc::new(Mutex::new(writer)) })
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
}

impl Writer {
    fn append(&mut self, entry: Entry) -> Result<Record, AuditError> {
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
        let io = |source| AuditError::Io { path: self.path.clone(), source };
        self.file.write_all(line.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.seq = record.seq;
        self.head = record.hash.clone();
        Ok(record)
    }
}

/// Length of the file up to its last newline, and the last complete line, read from the end.
fn last_line(file: &mut File) -> std::io::Result<(u64, Option<String>)> {
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
