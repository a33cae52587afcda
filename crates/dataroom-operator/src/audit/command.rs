//! `audit verify FILE [--checkpoint C --public-key K [--state S]]` and `audit verify [FILE]
//! --archive s3://… --public-key K [--state S]`: the command line's checks of a log.

use std::path::Path;
use std::process::ExitCode;

use super::archive::{Archive, Layout, verify_archive};
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

/// `audit verify [FILE] --archive …`: reads the chain `public_key` signed and the log's segments
/// back from the archive; with `state`, the newest checkpoint must follow the one remembered; with
/// `file`, the local log must be whole and still hold the archive's last record. Exit 0 when
/// intact, 1 when not, 2 when something cannot be read.
pub async fn verify_archived(
    archive: &dyn Archive,
    layout: &Layout,
    public_key: &str,
    file: Option<&Path>,
    state: Option<&Path>,
) -> ExitCode {
    let verdict = match verify_archive(archive, layout, public_key).await {
        Ok(verdict) => verdict,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut problems = verdict.problems;
    let Some(newest) = verdict.newest else {
        println!("NOT intact: the archive holds no checkpoint signed by this key");
        return ExitCode::FAILURE;
    };
    let remembered = match state.map(|s| Remembered::load(s, public_key)).transpose() {
        Ok(remembered) => remembered.flatten(),
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", state.unwrap_or(Path::new("")).display());
            return ExitCode::from(2);
        }
    };
    if let Some(Err(why)) = remembered.as_ref().map(|seen| newest.follows(seen)) {
        problems.push(why);
    }
    if let Some(file) = file {
        match local_problems(file, &newest) {
            Ok(found) => problems.extend(found),
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", file.display());
                return ExitCode::from(2);
            }
        }
    }
    for problem in &problems {
        println!("{problem}");
    }
    let head =
        verdict.head.map_or("no record".into(), |(seq, hash)| format!("head record {seq}, hash {hash}"));
    if !problems.is_empty() {
        println!(
            "NOT intact: {} problem(s); the archive holds {} records, {head}",
            problems.len(),
            verdict.records
        );
        return ExitCode::FAILURE;
    }
    let newer = state.filter(|_| remembered.is_none_or(|seen| newest.number > seen.number));
    if let Some(Err(e)) = newer.map(|state| Remembered::store(state, public_key, &newest)) {
        eprintln!("error: cannot write {}: {e}", state.unwrap_or(Path::new("")).display());
        return ExitCode::from(2);
    }
    let local = file.map_or(String::new(), |f| format!("; {} holds it", f.display()));
    println!(
        "intact: the archive holds {} records, {head}; checkpoint {} of {} (record {}) is the newest{local}",
        verdict.records, newest.number, newest.time, newest.seq
    );
    ExitCode::SUCCESS
}

/// `audit verify --archive s3://bucket/prefix`: the archive read with the standard AWS
/// configuration (credentials, region and endpoint from the environment or profile).
#[cfg(feature = "aws")]
pub async fn verify_s3_archive(
    bucket: &str,
    prefix: &str,
    public_key: &str,
    file: Option<&Path>,
    state: Option<&Path>,
) -> ExitCode {
    // Reading needs no retention; it only matters to what is written.
    let archive = super::archive::s3::S3Archive::from_environment(bucket, std::time::Duration::ZERO).await;
    verify_archived(&archive, &Layout::new(prefix), public_key, file, state).await
}

#[cfg(not(feature = "aws"))]
pub async fn verify_s3_archive(
    _bucket: &str,
    _prefix: &str,
    _public_key: &str,
    _file: Option<&Path>,
    _state: Option<&Path>,
) -> ExitCode {
    eprintln!(
        "error: this build has no AWS backend, so it cannot read an S3 archive: build it with `cargo build --release --features aws`"
    );
    ExitCode::from(2)
}

/// What is wrong with the local log: a break in its chain, or the archive's newest checkpointed
/// record missing or different (the log was cut back or replaced after it was archived).
fn local_problems(file: &Path, newest: &Checkpoint) -> std::io::Result<Vec<String>> {
    let report = verify_file(file)?;
    let mut problems: Vec<String> = report
        .problems
        .iter()
        .map(|p| format!("{} line {}: {}", file.display(), p.line, p.message))
        .collect();
    problems.extend(newest.check_log(file)?.map(|p| format!("{}: {p}", file.display())));
    Ok(problems)
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
