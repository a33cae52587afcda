//! The publisher's side of the archive. The records a checkpoint covers are copied first, then the
//! checkpoint, so the archive never holds a checkpoint without its records; a copy that fails is
//! retried with the same checkpoint, and an object already there with the same contents counts as
//! copied, so a retry never writes anything twice.

use std::path::PathBuf;
use std::sync::Arc;

use super::{Archive, ArchiveError, Layout};
use crate::audit::checkpoint::Checkpoint;
use crate::audit::seek::read_records;

/// Most records in one segment (a few MiB of typical records): what one upload holds, however long
/// the log was before the archive was turned on.
const SEGMENT_RECORDS: u64 = 10_000;

pub struct Copier {
    archive: Arc<dyn Archive>,
    layout: Layout,
    log: PathBuf,
    /// The last record in the archive; `None` until the archive has been read.
    archived_to: Option<u64>,
    segment_records: u64,
}

impl Copier {
    /// Copies records of the log at `log` and the checkpoints over them to `archive`.
    pub fn new(archive: Arc<dyn Archive>, layout: Layout, log: PathBuf) -> Self {
        Copier { archive, layout, log, archived_to: None, segment_records: SEGMENT_RECORDS }
    }

    /// Segments of at most `records` records (tests make several without writing 10,000).
    pub fn segment_records(self, records: u64) -> Self {
        Copier { segment_records: records.max(1), ..self }
    }

    /// Reads where the archive ends: the last record it holds, and the newest genuine checkpoint
    /// `public_key` signed (a new leader goes on with the chain from there when it is newer than
    /// the ConfigMap's).
    pub async fn resume(&mut self, public_key: &str) -> Result<Option<Checkpoint>, ArchiveError> {
        let segments = self.archive.list(&self.layout.segments()).await?;
        let ends = segments.iter().filter_map(|l| self.layout.segment_range(&l.key)).map(|(_, last)| last);
        self.archived_to = Some(ends.max().unwrap_or(0));
        let chain = self.archive.list(&self.layout.checkpoints(public_key)).await?;
        let newest = chain
            .iter()
            .rev()
            .find(|l| self.layout.checkpoint_number(public_key, &l.key).is_some() && !l.versions.is_empty());
        let Some(newest) = newest else { return Ok(None) };
        let body = self.archive.read(&newest.key, &newest.versions[0]).await?;
        let checkpoint = serde_json::from_slice::<Checkpoint>(&body).ok();
        Ok(checkpoint.filter(|c| c.verify_signature(public_key).is_ok()))
    }

    /// Copies the records up to `checkpoint`'s (those not yet archived), then `checkpoint`.
    pub async fn copy(&mut self, public_key: &str, checkpoint: &Checkpoint) -> Result<(), ArchiveError> {
        if self.archived_to.is_none() {
            self.resume(public_key).await?;
        }
        let mut archived_to = self.archived_to.unwrap_or(0);
        while archived_to < checkpoint.seq {
            let (log, upto, most) = (self.log.clone(), checkpoint.seq, self.segment_records);
            let read = move || read_records(&log, archived_to, upto, most);
            let segment = tokio::task::spawn_blocking(read).await.expect("reading the log does not panic")?;
            let Some(segment) = segment else { break };
            self.archive.put_once(&self.layout.segment(segment.first, segment.last), segment.lines).await?;
            archived_to = segment.last;
            self.archived_to = Some(archived_to);
        }
        let body = serde_json::to_vec_pretty(checkpoint).expect("a checkpoint serializes");
        self.archive.put_once(&self.layout.checkpoint(public_key, checkpoint.number), body).await
    }
}
