//! `audit verify FILE [--checkpoint C --public-key K]`: the command line's check of a log.

use std::path::Path;
use std::process::ExitCode;

use super::checkpoint::Checkpoint;
use super::verify_file;

/// `audit verify FILE [--checkpoint C --public-key K]`: prints the verdict; exit 0 when intact,
/// 1 when not, 2 when unreadable.
pub fn verify(file: &Path, checkpoint: Option<(&Path, &str)>) -> ExitCode {
    let report = match verify_file(file) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let mut problems: Vec<String> =
        report.problems.iter().map(|p| format!("line {}: {}", p.line, p.message)).collect();
    let mut covered = String::new();
    if let Some((path, public_key)) = checkpoint {
        match checked(file, path, public_key) {
            Ok((seq, time)) => covered = format!("; checkpoint of {time} (record {seq}) holds"),
            Err(Some(problem)) => problems.push(problem),
            Err(None) => return ExitCode::from(2),
        }
    }
    for problem in &problems {
        println!("{problem}");
    }
    let head = match &report.head {
        Some((seq, hash)) => format!("head record {seq}, hash {hash}"),
        None => "empty".to_string(),
    };
    if problems.is_empty() {
        println!("intact: {} records, {head}{covered}", report.records);
        ExitCode::SUCCESS
    } else {
        println!("NOT intact: {} problem(s) in {} records, {head}", problems.len(), report.records);
        ExitCode::FAILURE
    }
}

/// The checkpoint's record and time when it is genuine and the log still holds that record; the
/// problem otherwise, or `None` (already reported) when a file cannot be read.
fn checked(log: &Path, path: &Path, public_key: &str) -> Result<(u64, String), Option<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| eprintln!("error: cannot read {}: {e}", path.display()))
        .map_err(|()| None)?;
    let checkpoint: Checkpoint = serde_json::from_str(&text)
        .map_err(|e| format!("checkpoint {}: not a checkpoint ({e})", path.display()))?;
    checkpoint.verify_signature(public_key).map_err(|why| format!("checkpoint {}: {why}", path.display()))?;
    match checkpoint.check_log(log) {
        Ok(None) => Ok((checkpoint.seq, checkpoint.time)),
        Ok(Some(problem)) => Err(Some(problem)),
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", log.display());
            Err(None)
        }
    }
}
