//! The archive written by the copier and read back by the verifier, in memory: what a copy puts
//! there, and each way of breaking or forging it that the verifier must name.

use std::sync::Arc;

use super::memory::MemoryArchive;
use super::*;
use crate::audit::checkpoint::{Checkpoint, Signer};
use crate::audit::{AuditLog, Entry, Outcome};

struct Setup {
    _dir: tempfile::TempDir,
    log: AuditLog,
    archive: Arc<MemoryArchive>,
    copier: Copier,
    signer: Signer,
    chain: Vec<Checkpoint>,
    layout: Layout,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("audit.jsonl")).unwrap();
        let archive = Arc::new(MemoryArchive::default());
        let layout = Layout::new("audit");
        let copier = Copier::new(archive.clone(), layout.clone(), log.path()).segment_records(4);
        Setup { _dir: dir, log, archive, copier, signer: Signer::generate(), chain: Vec::new(), layout }
    }

    async fn append(&self, n: usize) {
        for _ in 0..n {
            let entry = Entry::new("controller", "launch", "ec2instance/default/web", Outcome::Success);
            self.log.append(entry).await.unwrap();
        }
    }

    /// Signs the head as the next checkpoint and copies it (with its records).
    async fn checkpoint(&mut self) -> Result<(), ArchiveError> {
        let (seq, hash) = self.log.head();
        let next = self.signer.sign(self.chain.last(), seq, &hash, jiff::Timestamp::now());
        self.copier.copy(&self.signer.public_key(), &next).await?;
        self.chain.push(next);
        Ok(())
    }

    async fn verdict(&self) -> check::ArchiveVerdict {
        verify_archive(self.archive.as_ref(), &self.layout, &self.signer.public_key()).await.unwrap()
    }

    /// Writes a log of `records` and four checkpoints over it, one of them quiet.
    async fn archived(records: usize) -> Self {
        let mut setup = Setup::new();
        setup.append(records - 3).await;
        setup.checkpoint().await.unwrap();
        setup.checkpoint().await.unwrap();
        setup.append(3).await;
        setup.checkpoint().await.unwrap();
        setup
    }
}

#[tokio::test]
async fn a_copied_chain_reads_back_whole() {
    let setup = Setup::archived(10).await;
    let verdict = setup.verdict().await;
    assert_eq!(verdict.problems, Vec::<String>::new());
    assert_eq!((verdict.records, verdict.head), (10, Some(setup.log.head())));
    assert_eq!(verdict.newest.as_ref(), setup.chain.last());
    let segments: Vec<_> = setup.archive.keys().into_iter().filter(|k| k.contains("/segments/")).collect();
    let ranges: Vec<_> = segments.iter().filter_map(|k| setup.layout.segment_range(k)).collect();
    assert_eq!(ranges, [(1, 4), (5, 7), (8, 10)], "at most 4 records each, none after a checkpoint's record");
}

#[tokio::test]
async fn a_copy_that_failed_is_retried_without_writing_anything_twice() {
    let mut setup = Setup::new();
    setup.append(6).await;
    // Calls: two listings, segment 1-4, then segment 5-6 is stored but its answer is lost.
    setup.archive.lose_answer_to(4);
    assert!(setup.checkpoint().await.is_err(), "the copy does not know it landed");
    let (seq, hash) = setup.log.head();
    let first = setup.signer.sign(None, seq, &hash, jiff::Timestamp::now());
    setup.copier.copy(&setup.signer.public_key(), &first).await.unwrap();
    setup.chain.push(first);
    let verdict = setup.verdict().await;
    assert_eq!(verdict.problems, Vec::<String>::new(), "stored once, nothing written over");
    assert_eq!(verdict.records, 6);

    // Something else written under a key the copy needs (after the copier read where the archive
    // ends) is never taken for the copy's own.
    let mut setup = Setup::new();
    setup.append(4).await;
    setup.checkpoint().await.unwrap();
    setup.append(2).await;
    setup.archive.put_once(&setup.layout.segment(5, 6), b"forged\n".to_vec()).await.unwrap();
    let refused = setup.checkpoint().await.unwrap_err();
    assert!(matches!(refused, ArchiveError::Conflict { .. }), "{refused}");
}

#[tokio::test]
async fn a_new_copier_goes_on_where_the_archive_ends() {
    let setup = Setup::archived(10).await;
    let mut resumed = Copier::new(setup.archive.clone(), setup.layout.clone(), setup.log.path());
    let newest = resumed.resume(&setup.signer.public_key()).await.unwrap();
    assert_eq!(newest.as_ref(), setup.chain.last());
    setup.append(2).await;
    let (seq, hash) = setup.log.head();
    let next = setup.signer.sign(newest.as_ref(), seq, &hash, jiff::Timestamp::now());
    resumed.copy(&setup.signer.public_key(), &next).await.unwrap();
    let verdict = setup.verdict().await;
    assert_eq!(verdict.problems, Vec::<String>::new());
    assert_eq!((verdict.records, verdict.newest.map(|c| c.number)), (12, Some(4)));
}

#[tokio::test]
async fn each_break_or_forgery_in_the_archive_is_named() {
    type Attack = fn(&Setup);
    let attacks: [(&str, Attack, &str); 5] = [
        (
            "a segment written over",
            |s| s.archive.write_over(&s.layout.segment(5, 7), b"forged\n"),
            "written over 1 time",
        ),
        (
            "a checkpoint written over",
            |s| {
                let forged = Signer::generate().sign(None, 1, "x", jiff::Timestamp::now());
                let key = s.layout.checkpoint(&s.signer.public_key(), 2);
                s.archive.write_over(&key, &serde_json::to_vec(&forged).unwrap());
            },
            "written over 1 time",
        ),
        (
            "a checkpoint signed by another key",
            |s| {
                let forged = Signer::generate().sign(s.chain.last(), 10, "x", jiff::Timestamp::now());
                let key = s.layout.checkpoint(&s.signer.public_key(), 4);
                s.archive.write_over(&key, &serde_json::to_vec(&forged).unwrap());
            },
            "not signed by this key",
        ),
        (
            "a checkpoint left out",
            |s| {
                let (seq, hash) = s.log.head();
                let skipped = s.signer.sign(s.chain.last(), seq, &hash, jiff::Timestamp::now());
                let fifth = s.signer.sign(Some(&skipped), seq, &hash, jiff::Timestamp::now());
                let key = s.layout.checkpoint(&s.signer.public_key(), 5);
                s.archive.write_over(&key, &serde_json::to_vec(&fifth).unwrap());
            },
            "1 checkpoint(s) missing before checkpoint 5",
        ),
        (
            "a checkpoint beyond the archived records",
            |s| {
                let (seq, hash) = s.log.head();
                let ahead = s.signer.sign(s.chain.last(), seq + 5, &hash, jiff::Timestamp::now());
                let key = s.layout.checkpoint(&s.signer.public_key(), 4);
                s.archive.write_over(&key, &serde_json::to_vec(&ahead).unwrap());
            },
            "the archive holds records only up to 10",
        ),
    ];
    for (attack, apply, named) in attacks {
        let setup = Setup::archived(10).await;
        apply(&setup);
        let problems = setup.verdict().await.problems;
        assert!(problems.iter().any(|p| p.contains(named)), "{attack}: {problems:?}");
    }
}

#[test]
fn records_out_of_place_in_a_segment_are_named() {
    let mut prev = crate::audit::GENESIS.to_string();
    let lines: Vec<String> = (1..=3)
        .map(|seq| {
            let mut record = crate::audit::Record {
                seq,
                time: "2026-12-02T00:00:00Z".into(),
                actor: "controller".into(),
                action: "stop".into(),
                target: "ec2instance/default/web".into(),
                params: serde_json::json!({}),
                outcome: Outcome::Success,
                detail: None,
                prev: prev.clone(),
                hash: String::new(),
            };
            let line = record.seal() + "\n";
            prev = record.hash;
            line
        })
        .collect();
    let checkpoint = Signer::generate().sign(None, 3, &prev, jiff::Timestamp::now());
    // Each segment: the records its key names, and the records (0-based) it holds.
    type Segments<'a> = &'a [((u64, u64), &'a [usize])];
    let problems = |segments: Segments| {
        let mut records = check::Records::new(std::slice::from_ref(&checkpoint));
        for (range, held) in segments {
            let body: String = held.iter().map(|i| lines[*i].as_str()).collect();
            records.segment("s", *range, body.as_bytes());
        }
        records.finish();
        records.problems
    };
    assert_eq!(problems(&[((1, 2), &[0, 1]), ((3, 3), &[2])]), Vec::<String>::new());
    let cases: [(Segments, &str); 4] = [
        (&[((1, 3), &[0, 1])], "named for records 1 to 3, but holds records 1 to 2"),
        (&[((1, 1), &[0]), ((3, 3), &[2])], "1 record(s) missing before record 3"),
        (&[((2, 3), &[1, 2])], "missing before record 2"),
        (&[((1, 2), &[0, 1])], "covers record 3, but the archive holds records only up to 2"),
    ];
    for (segments, named) in cases {
        let found = problems(segments);
        assert!(found.iter().any(|p| p.contains(named)), "{named}: {found:?}");
    }
}

#[tokio::test]
async fn a_log_that_lacks_a_record_is_not_archived() {
    let mut setup = Setup::new();
    setup.append(3).await;
    let path = setup.log.path();
    let text = std::fs::read_to_string(&path).unwrap();
    let without_second: Vec<&str> =
        text.lines().enumerate().filter(|(i, _)| *i != 1).map(|(_, l)| l).collect();
    std::fs::write(&path, without_second.join("\n") + "\n").unwrap();
    let refused = setup.checkpoint().await.unwrap_err();
    assert!(refused.to_string().contains("record 2 is not in the log"), "{refused}");
    assert!(setup.archive.keys().is_empty(), "nothing copied: {:?}", setup.archive.keys());
}
