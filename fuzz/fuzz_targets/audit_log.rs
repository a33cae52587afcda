//! `audit verify` on arbitrary files: never panics, reports only lines that exist, and never
//! calls intact a log that is torn (no final newline) or whose records it cannot read.
#![no_main]

use std::sync::LazyLock;

use dataroom_operator::audit::checkpoint::{Checkpoint, Signer};
use dataroom_operator::audit::verify_lines;
use libfuzzer_sys::fuzz_target;

/// A key made for this run: no fuzzed checkpoint may verify under it.
static PUBLIC_KEY: LazyLock<String> = LazyLock::new(|| Signer::generate().public_key());

fuzz_target!(|data: &[u8]| {
    // Split as `verify_file` reads: raw lines, each with its newline.
    let lines: Vec<String> =
        data.split_inclusive(|b| *b == b'\n').map(|l| String::from_utf8_lossy(l).into_owned()).collect();
    let report = verify_lines(&lines);
    assert!(report.problems.iter().all(|p| (1..=lines.len()).contains(&p.line)));
    if !data.is_empty() && !data.ends_with(b"\n") {
        assert!(!report.is_intact(), "a torn log passed");
    }
    if let Ok(checkpoint) = serde_json::from_slice::<Checkpoint>(data) {
        assert!(checkpoint.verify_signature(&PUBLIC_KEY).is_err(), "a forged checkpoint verified");
    }
});
