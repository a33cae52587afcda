//! Reading the chain back from the archive: the checkpoints signed by one key must form an
//! unbroken chain, the segments must hold every record from 1 on with its hash chain intact, every
//! checkpoint's record must be there with the hash it signed, and nothing may have been written
//! over or deleted (the first version of each object is what is checked).

use futures::{StreamExt, TryStreamExt, stream};

use super::{Archive, ArchiveError, Layout, Listed};
use crate::audit::checkpoint::Checkpoint;
use crate::audit::verify::Chain;

/// Objects read at once.
const CONCURRENT_READS: usize = 16;

/// What the archive holds and what is wrong with it.
#[derive(Debug, Default)]
pub struct ArchiveVerdict {
    pub problems: Vec<String>,
    /// Records in the segments, and the last one's sequence number and hash.
    pub records: u64,
    pub head: Option<(u64, String)>,
    /// The newest checkpoint of the chain.
    pub newest: Option<Checkpoint>,
}

/// Reads the chain `public_key` signed, and the log's segments, back from `archive`.
pub async fn verify_archive(
    archive: &dyn Archive,
    layout: &Layout,
    public_key: &str,
) -> Result<ArchiveVerdict, ArchiveError> {
    let mut problems = Vec::new();
    let listed_checkpoints = archive.list(&layout.checkpoints(public_key)).await?;
    let listed_segments = archive.list(&layout.segments()).await?;
    let numbered = listed_checkpoints.iter().filter_map(|l| {
        let number = layout.checkpoint_number(public_key, &l.key);
        if number.is_none() {
            problems.push(format!("{}: not a checkpoint of this chain", l.key));
        }
        Some((number?, l))
    });
    let numbered: Vec<(u64, &Listed)> = numbered.collect();
    let ranged = listed_segments.iter().filter_map(|l| {
        let range = layout.segment_range(&l.key);
        if range.is_none() {
            problems.push(format!("{}: not a segment of the log", l.key));
        }
        Some((range?, l))
    });
    let ranged: Vec<((u64, u64), &Listed)> = ranged.collect();
    for listed in listed_checkpoints.iter().chain(&listed_segments) {
        problems.extend(tampering(listed));
    }

    let bodies: Vec<(u64, Vec<u8>)> =
        stream::iter(numbered.into_iter().filter(|(_, l)| !l.versions.is_empty()))
            .map(|(number, l)| async move {
                Ok::<_, ArchiveError>((number, archive.read(&l.key, &l.versions[0]).await?))
            })
            .buffered(CONCURRENT_READS)
            .try_collect()
            .await?;
    let chain = check_checkpoints(&bodies, public_key, &mut problems);

    let mut records = Records::new(&chain);
    let mut segments = stream::iter(ranged.into_iter().filter(|(_, l)| !l.versions.is_empty()))
        .map(|(range, l)| async move {
            Ok::<_, ArchiveError>((range, l, archive.read(&l.key, &l.versions[0]).await?))
        })
        .buffered(CONCURRENT_READS);
    while let Some((range, listed, body)) = segments.try_next().await? {
        records.segment(&listed.key, range, &body);
    }
    let (count, head) = records.finish();
    problems.extend(records.problems);
    Ok(ArchiveVerdict { problems, records: count, head, newest: chain.last().cloned() })
}

/// Attempts to write over or delete an archived object: the lock kept the original, but someone
/// with write access to the bucket tried, and a verifier must say so.
fn tampering(listed: &Listed) -> Vec<String> {
    let mut found = Vec::new();
    if listed.versions.len() > 1 {
        let over = listed.versions.len() - 1;
        found.push(format!(
            "{}: written over {over} time(s) after it was archived; the first version is checked",
            listed.key
        ));
    }
    if listed.delete_markers > 0 {
        found.push(format!(
            "{}: someone tried to delete it ({} delete marker(s))",
            listed.key, listed.delete_markers
        ));
    }
    if listed.versions.is_empty() {
        found.push(format!("{}: no version of it is left", listed.key));
    }
    found
}

/// The checkpoints (numbered by their keys, in order) that are genuine, in chain order; a break in
/// the chain (a forgery, a gap, a link to another chain, a checkpoint covering less) is a problem.
fn check_checkpoints(
    bodies: &[(u64, Vec<u8>)],
    public_key: &str,
    problems: &mut Vec<String>,
) -> Vec<Checkpoint> {
    let mut chain: Vec<Checkpoint> = Vec::new();
    for (number, body) in bodies {
        let checkpoint = match serde_json::from_slice::<Checkpoint>(body) {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("checkpoint {number}: not a checkpoint ({e})"));
                continue;
            }
        };
        if let Err(why) = checkpoint.verify_signature(public_key) {
            problems.push(format!("checkpoint {number}: {why}"));
            continue;
        }
        if checkpoint.number != *number {
            problems.push(format!(
                "checkpoint {number}: it is checkpoint {} stored under another number",
                checkpoint.number
            ));
            continue;
        }
        if let Some(before) = chain.last() {
            if checkpoint.number > before.number + 1 {
                let missing = checkpoint.number - before.number - 1;
                problems
                    .push(format!("{missing} checkpoint(s) missing before checkpoint {}", checkpoint.number));
            }
            if let Err(why) = checkpoint.follows(before) {
                problems.push(why);
            }
        }
        chain.push(checkpoint);
    }
    chain
}

/// The records of the segments, in order, checked as one log, and each checkpoint's record found.
pub(super) struct Records<'a> {
    log: Chain,
    /// The checkpoints whose records are still to be reached, in order of record.
    pending: std::iter::Peekable<std::vec::IntoIter<&'a Checkpoint>>,
    pub(super) problems: Vec<String>,
}

impl<'a> Records<'a> {
    pub(super) fn new(chain: &'a [Checkpoint]) -> Self {
        let mut by_record: Vec<&Checkpoint> = chain.iter().filter(|c| c.seq > 0).collect();
        by_record.sort_by_key(|c| (c.seq, c.number));
        Records { log: Chain::default(), pending: by_record.into_iter().peekable(), problems: Vec::new() }
    }

    pub(super) fn segment(&mut self, key: &str, (first, last): (u64, u64), body: &[u8]) {
        let before = self.log.report.problems.len();
        let mut seqs = None;
        for line in body.split_inclusive(|b| *b == b'\n') {
            self.log.next(&String::from_utf8_lossy(line));
            if let Some((seq, _)) = &self.log.report.head {
                seqs = Some((seqs.map_or(*seq, |(f, _)| f), *seq));
            }
            self.reach_checkpoints();
        }
        let broken = self.log.report.problems[before..].iter().map(|p| format!("{key}: {}", p.message));
        self.problems.extend(broken.collect::<Vec<_>>());
        if seqs != Some((first, last)) {
            let held = seqs.map_or("no record".to_string(), |(f, l)| format!("records {f} to {l}"));
            self.problems.push(format!("{key}: named for records {first} to {last}, but holds {held}"));
        }
    }

    /// Checks each checkpoint whose record the log has now reached.
    fn reach_checkpoints(&mut self) {
        let Some((seq, hash)) = &self.log.report.head else { return };
        while let Some(checkpoint) = self.pending.next_if(|c| c.seq <= *seq) {
            if checkpoint.seq < *seq {
                self.problems.push(format!(
                    "checkpoint {} covers record {}, which is not in the archive",
                    checkpoint.number, checkpoint.seq
                ));
            } else if checkpoint.hash != *hash {
                self.problems.push(format!(
                    "record {seq} is not the one checkpoint {} signed at {} (hash {} there, {hash} here): it was replaced",
                    checkpoint.number, checkpoint.time, checkpoint.hash
                ));
            }
        }
    }

    /// How many records, the last one, and a problem for each checkpoint beyond the last record.
    pub(super) fn finish(&mut self) -> (u64, Option<(u64, String)>) {
        let end = self.log.report.head.as_ref().map_or(0, |(seq, _)| *seq);
        for checkpoint in self.pending.by_ref() {
            self.problems.push(format!(
                "checkpoint {} ({}) covers record {}, but the archive holds records only up to {end}",
                checkpoint.number, checkpoint.time, checkpoint.seq
            ));
        }
        (self.log.report.records, self.log.report.head.clone())
    }
}
