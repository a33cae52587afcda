//! The hash-chained audit log: appends survive restarts, and every kind of tampering is caught
//! and located, by the library and by `dataroom-operator audit verify`.

use std::path::{Path, PathBuf};
use std::process::Command;

use dataroom_operator::audit::{AuditLog, Entry, Outcome, verify_file};
use serde_json::json;

async fn log_with(records: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    for n in 0..records {
        let entry = Entry::new("controller", "launch", &format!("ec2instance/ns/web-{n}"), Outcome::Success)
            .params(json!({ "instance_id": format!("i-{n}") }));
        log.append(entry).await.unwrap();
    }
    (dir, path)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_string).collect()
}

fn write(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

fn verify_cli(path: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dataroom-operator"))
        .args(["audit", "verify"])
        .arg(path)
        .output()
        .unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap())
}

#[tokio::test]
async fn an_untouched_log_verifies_and_a_restart_continues_the_chain() {
    let (_dir, path) = log_with(3).await;
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.head().0, 3);
    let fourth =
        log.append(Entry::new("admin:ops", "stop", "ec2instance/ns/web-0", Outcome::Success)).await.unwrap();
    assert_eq!(fourth.seq, 4);
    let report = verify_file(&path).unwrap();
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(report.records, 4);
    assert_eq!(report.head, Some((4, fourth.hash.clone())));
    let (code, out) = verify_cli(&path);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact: 4 records"), "{out}");
}

#[tokio::test]
async fn an_edited_record_is_named() {
    let (_dir, path) = log_with(4).await;
    let mut l = lines(&path);
    l[1] = l[1].replace("i-1", "i-9");
    write(&path, &l);
    let report = verify_file(&path).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!((report.problems[0].line, report.problems[0].seq), (2, Some(2)));
    assert!(report.problems[0].message.contains("edited"));
    let (code, out) = verify_cli(&path);
    assert_eq!(code, 1);
    assert!(out.contains("line 2: record 2 was edited"), "{out}");
}

#[tokio::test]
async fn an_inserted_record_is_named() {
    let (_dir, path) = log_with(4).await;
    let mut l = lines(&path);
    // A forged record with a self-consistent hash still cannot follow the chain.
    let (other_dir, other) = log_with(3).await;
    l.insert(2, lines(&other)[2].clone());
    drop(other_dir);
    write(&path, &l);
    let report = verify_file(&path).unwrap();
    assert!(!report.is_intact());
    assert_eq!(report.problems[0].line, 3);
}

#[tokio::test]
async fn reordered_records_are_named() {
    let (_dir, path) = log_with(4).await;
    let mut l = lines(&path);
    l.swap(1, 2);
    write(&path, &l);
    let report = verify_file(&path).unwrap();
    assert_eq!(report.problems[0].line, 2);
    assert!(report.problems[0].message.contains("missing before record 3"), "{:?}", report.problems);
    assert!(report.problems[1].message.contains("out of order"), "{:?}", report.problems);
}

#[tokio::test]
async fn a_removed_record_is_named() {
    let (_dir, path) = log_with(4).await;
    let mut l = lines(&path);
    l.remove(1);
    write(&path, &l);
    let report = verify_file(&path).unwrap();
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].line, 2);
    assert!(report.problems[0].message.contains("1 record(s) missing before record 3"));
}

#[tokio::test]
async fn a_truncated_log_is_caught_and_the_writer_cuts_the_torn_record() {
    let (_dir, path) = log_with(3).await;
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &text[..text.len() - 20]).unwrap();
    let report = verify_file(&path).unwrap();
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].line, 3);
    assert!(report.problems[0].message.contains("truncated"));
    // The torn record was never acknowledged: reopening cuts it and the chain goes on intact.
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.head().0, 2);
    log.append(Entry::new("controller", "stop", "x", Outcome::Success)).await.unwrap();
    assert!(verify_file(&path).unwrap().is_intact());
}

#[tokio::test]
async fn a_damaged_last_record_stops_the_writer() {
    let (_dir, path) = log_with(2).await;
    let mut l = lines(&path);
    l[1] = l[1].replace("launch", "lunch");
    write(&path, &l);
    let err = AuditLog::open(&path).err().expect("refuses to extend a damaged log");
    assert!(err.to_string().contains("audit verify"), "{err}");
}

#[tokio::test]
async fn secret_looking_parameters_are_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let log = AuditLog::open(&path).unwrap();
    let params = json!({ "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----", "nested": { "password": "hunter2" }, "name": "ok" });
    log.append(Entry::new("admin", "keypair", "k", Outcome::Success).params(params)).await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("BEGIN OPENSSH") && !text.contains("hunter2"), "{text}");
    assert!(text.contains("\"name\":\"ok\""));
}

#[test]
fn verify_reports_an_unreadable_file_with_exit_code_two() {
    let (code, _) = verify_cli(Path::new("/nonexistent/audit.jsonl"));
    assert_eq!(code, 2);
}
