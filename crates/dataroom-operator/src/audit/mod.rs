//! The tamper-evident audit log: append-only JSON Lines, one record per operation, each carrying
//! the SHA-256 of the record before it. A record's hash covers the exact bytes written, so any
//! edit, insertion, reordering or removal breaks the chain at a place `verify` names.

pub mod archive;
pub mod checkpoint;
mod command;
mod record;
mod seek;
mod verify;
mod writer;

pub use command::{verify, verify_archived, verify_s3_archive};
pub use record::{Entry, Outcome, Record};
pub use seek::first_after;
pub use verify::{Problem, Report, verify_file, verify_lines, verify_prefix};
pub use writer::{AuditError, AuditLog};

/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
