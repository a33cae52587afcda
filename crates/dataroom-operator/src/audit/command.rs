//! `audit verify FILE [--checkpoint C --public-key K [--state S]]`: the command line's check of a log.

use std::path::Path;
use std::process::ExitCode;

use super::checkpoint::Checkpoint;
use super::verify_file;

/// `audit verify FILE [--checkpoint C --public-key K [--state S]]`: prints the verdict; exit 0
/// when intact, 1 when not, 2 when unreadable.
pub fn verify(file: &Path, checkpoint: Option<(&Path, &str)>, state: Option<&Path>) -> ExitCode {
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
        match checked(file, path, public_key, state) {
            Ok(c) => covered = format!("; checkpoint {} of {} (record {}) holds", c.number, c.time, c.seq),
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

/// The checkpoint when it is genuine, follows the highest one this verifier accepted before (with
/// `state`, which it then becomes) and the log still holds its record; the problem otherwise, or
/// `None` (already reported) when a file cannot be read or written.
fn checked(
    log: &Path,
    path: &Path,
    public_key: &str,
    state: Option<&Path>,
) -> Result<Checkpoint, Option<String>> {
    let unreadable = |path: &Path, e: std::io::Error| {
        eprintln!("error: cannot read {}: {e}", path.display());
        None
    };
    let text = std::fs::read_to_string(path).map_err(|e| unreadable(path, e))?;
    let checkpoint: Checkpoint = serde_json::from_str(&text)
        .map_err(|e| format!("checkpoint {}: not a checkpoint ({e})", path.display()))?;
    checkpoint.verify_signature(public_key).map_err(|why| format!("checkpoint {}: {why}", path.display()))?;
    let remembered = match state {
        Some(state) => Remembered::load(state, public_key).map_err(|e| unreadable(state, e))?,
        None => None,
    };
    if let Some(seen) = &remembered {
        checkpoint.follows(seen)?;
    }
    match checkpoint.check_log(log) {
        Ok(None) => {}
        Ok(Some(problem)) => return Err(Some(problem)),
        Err(e) => return Err(unreadable(log, e)),
    }
    if let Some(state) = state.filter(|_| remembered.is_none_or(|seen| checkpoint.number > seen.number)) {
        Remembered::store(state, public_key, &checkpoint).map_err(|e| {
            eprintln!("error: cannot write {}: {e}", state.display());
            None
        })?;
    }
    Ok(checkpoint)
}

/// What a verifier remembers: the highest checkpoint it accepted under a public key (another
/// key, after a rotation, starts afresh).
#[derive(serde::Serialize, serde::Deserialize)]
struct Remembered {
    public_key: String,
    checkpoint: Checkpoint,
}

impl Remembered {
    fn load(path: &Path, public_key: &str) -> std::io::Result<Option<Checkpoint>> {
        let text = match std::fs::read_to_string(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            read => read?,
        };
        let state: Remembered = serde_json::from_str(&text).map_err(std::io::Error::other)?;
        Ok((state.public_key == public_key).then_some(state.checkpoint))
    }

    /// Replaces the state whole (a temporary file renamed over it), so a crash leaves the old one.
    fn store(path: &Path, public_key: &str, checkpoint: &Checkpoint) -> std::io::Result<()> {
        let state = Remembered { public_key: public_key.to_string(), checkpoint: checkpoint.clone() };
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, serde_json::to_string_pretty(&state).map_err(std::io::Error::other)?)?;
        std::fs::rename(&temporary, path)
    }
}
