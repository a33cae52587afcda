//! Remote path validation (admin file routes, DataRoom `files`): whatever it accepts is absolute,
//! normalised and short, so a path can never climb out of where it names.
#![no_main]

use dataroom_operator::ssh::check_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|path: &str| {
    if check_path(path).is_ok() {
        assert!(path.starts_with('/') && path.len() <= 4096 && !path.contains('\0'));
        for part in path[1..].split('/') {
            assert!(!part.is_empty() && part != "." && part != "..", "{path:?} accepted");
        }
    }
});
