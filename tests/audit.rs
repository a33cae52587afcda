//! The hash-chained audit log: appends survive restarts, and every kind of tampering is caught
//! and located, by the library and by `dataroom-operator audit verify`.

use std::path::{Path, PathBuf};
use std::process::Command;

use dataroom_operator::audit::{AuditLog, Entry, Outcome, verify_file};
use serde_json::json;

#[allow(dead_code)]
#[path = "support/moto.rs"]
mod moto;

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

/// The archive against moto's S3 with Object Lock: the publisher copies each checkpoint and the
/// records it covers, locked in compliance mode; then the attacks of someone who can rewrite the
/// log's volume, the checkpoint ConfigMap and write to the bucket.
#[tokio::test]
async fn the_archive_keeps_what_the_cluster_can_rewrite() {
    use aws_sdk_s3::types::ObjectLockMode;
    use dataroom_operator::audit::archive::{Copier, Layout, s3::S3Archive};
    use dataroom_operator::audit::checkpoint::{CONFIGMAP_KEY, Signer};
    use dataroom_operator::controller::checkpoint::Publisher;

    let moto = moto::Moto::start();
    let config = moto.config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build(),
    );
    s3.create_bucket().bucket("plain").send().await.unwrap();
    s3.create_bucket().bucket("locked").object_lock_enabled_for_bucket(true).send().await.unwrap();
    let year = std::time::Duration::from_secs(365 * 86_400);
    let refused = S3Archive::new(&config, "plain", year).check_locking().await.unwrap_err();
    assert!(refused.to_string().contains("has no Object Lock"), "{refused}");
    let archive = S3Archive::new(&config, "locked", year);
    archive.check_locking().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (log_path, state) = (dir.path().join("audit.jsonl"), dir.path().join("verifier.state"));
    let log = AuditLog::open(&log_path).unwrap();
    let signer = Signer::generate();
    let key = signer.public_key();
    let emulator = kube_emulator::ApiServer::new();
    let configmaps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(emulator.client(), "default");
    let copier = Copier::new(std::sync::Arc::new(archive), Layout::new("audit"), log_path.clone());
    let clock = dataroom_operator::clock::system();
    let publisher =
        Publisher::new(configmaps.clone(), "checkpoint".into(), signer, log.clone(), clock, Some(copier));
    let append = async |n: usize| {
        for i in 0..n {
            let entry =
                Entry::new("controller", "launch", &format!("ec2instance/default/web-{i}"), Outcome::Success);
            log.append(entry).await.unwrap();
        }
    };
    append(5).await;
    let first = publisher.publish().await.unwrap();
    let cut_at = std::fs::metadata(&log_path).unwrap().len();
    publisher.publish().await.unwrap();
    append(3).await;
    let third = publisher.publish().await.unwrap();
    assert_eq!((first.number, third.number, third.seq), (1, 3, 8));

    let verify = |file: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dataroom-operator"));
        command.args(["audit", "verify", "--archive", "s3://locked/audit", "--public-key", &key, "--state"]);
        command.arg(&state).args(file.then_some(&log_path));
        command.env("AWS_ENDPOINT_URL", &moto.endpoint).env("AWS_REGION", "us-east-1");
        command.env("AWS_ACCESS_KEY_ID", "testing").env("AWS_SECRET_ACCESS_KEY", "testing");
        let out = command.output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap();
        (out.status.code().unwrap(), text)
    };
    let (code, out) = verify(true);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("the archive holds 8 records") && out.contains("checkpoint 3 of"), "{out}");

    // Every object is locked in compliance mode for the retention asked for.
    let listed = s3.list_object_versions().bucket("locked").send().await.unwrap();
    let segment = listed.versions().iter().find(|v| v.key().unwrap().contains("/segments/")).unwrap();
    let (segment_key, segment_version) = (segment.key().unwrap(), segment.version_id().unwrap());
    let head = s3.head_object().bucket("locked").key(segment_key).send().await.unwrap();
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Compliance));
    let until = head.object_lock_retain_until_date().unwrap().secs();
    let in_a_year = jiff::Timestamp::now().as_second() + 365 * 86_400;
    assert!((until - in_a_year).abs() < 600, "locked for a year: {until} vs {in_a_year}");
    // The attack on the archive itself: delete the original version. The lock refuses it.
    let deleted =
        s3.delete_object().bucket("locked").key(segment_key).version_id(segment_version).send().await;
    assert!(deleted.is_err(), "a locked version cannot be deleted");

    // The attack on the cluster: the log cut back to the first checkpoint, that checkpoint put
    // back in the ConfigMap. The cluster alone cannot tell; the archive can.
    std::fs::OpenOptions::new().write(true).open(&log_path).unwrap().set_len(cut_at).unwrap();
    let old = json!({ "data": { CONFIGMAP_KEY: serde_json::to_string(&first).unwrap() } });
    let params = kube::api::PatchParams::default();
    configmaps.patch("checkpoint", &params, &kube::api::Patch::Merge(&old)).await.unwrap();
    let (code, out) = verify(true);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("covers record 8, but the log ends at record 5"), "{out}");
    let (code, out) = verify(false);
    assert_eq!(code, 0, "the archive itself is whole: {out}");

    // A forged checkpoint written over an archived one: a new version, seen and set aside.
    let forged = Signer::generate().sign(None, 5, &first.hash, jiff::Timestamp::now());
    let checkpoint_key = Layout::new("audit").checkpoint(&key, 3);
    let body = aws_sdk_s3::primitives::ByteStream::from(serde_json::to_vec(&forged).unwrap());
    s3.put_object().bucket("locked").key(&checkpoint_key).body(body).send().await.unwrap();
    let (code, out) = verify(false);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("00000000000000000003.json: written over 1 time(s)"), "{out}");
    assert!(
        out.contains("1 problem(s); the archive holds 8 records"),
        "the original is still what is checked: {out}"
    );
}
