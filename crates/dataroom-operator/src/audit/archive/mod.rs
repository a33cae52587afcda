//! The audit archive: every checkpoint, and every stretch of the log it covers, copied where the
//! cluster cannot rewrite them (S3 with Object Lock in compliance mode: until the retention date
//! no one, the bucket's owner included, can change or delete an object version). A node or a
//! service account that can rewrite the log's volume and the checkpoint ConfigMap still cannot
//! rewrite what was archived, and `audit verify --archive` reads the whole chain back from there.
//!
//! Layout under the archive's prefix:
//! - `segments/<first>-<last>.jsonl`: records `first..=last` exactly as the log stores them;
//!   segments are contiguous from record 1.
//! - `checkpoints/<key fingerprint>/<number>.json`: each checkpoint of the chain signed by that
//!   key (a rotated key starts a chain of its own).
//!
//! Numbers are zero-padded to 20 digits so that keys sort in order.

mod check;
mod copier;
#[cfg(feature = "aws")]
pub mod s3;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

pub use check::verify_archive;
pub use copier::Copier;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The store could not be reached or refused the call; worth retrying.
    #[error("audit archive: {0}")]
    Unavailable(String),
    /// The key already holds something else: another writer, or a forged object.
    #[error("audit archive: {key} already holds other contents; it is never written over")]
    Conflict { key: String },
    /// The local log cannot supply the records to copy.
    #[error("audit archive: reading the log: {0}")]
    Log(#[from] std::io::Error),
}

/// An object in the archive with every version it has, oldest first. More than one version, or a
/// delete marker, means someone tried to write over or delete it: the first version is the record.
#[derive(Clone, Debug, PartialEq)]
pub struct Listed {
    pub key: String,
    pub versions: Vec<String>,
    pub delete_markers: usize,
}

#[async_trait]
pub trait Archive: Send + Sync {
    /// Stores `body` at `key`, locked against change and deletion. Storing the same body again is
    /// a no-op (a retried copy); anything else already there is a [`ArchiveError::Conflict`].
    async fn put_once(&self, key: &str, body: Vec<u8>) -> Result<(), ArchiveError>;
    /// Every object whose key starts with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, ArchiveError>;
    /// One version of an object.
    async fn read(&self, key: &str, version: &str) -> Result<Vec<u8>, ArchiveError>;
}

/// Where each thing lives under the archive's prefix.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// `prefix` is used as a folder: a missing final `/` is added (an empty prefix is the bucket's root).
    pub fn new(prefix: &str) -> Self {
        let prefix = prefix.trim_start_matches('/');
        let prefix = match prefix {
            "" => String::new(),
            p if p.ends_with('/') => p.to_string(),
            p => format!("{p}/"),
        };
        Layout { prefix }
    }

    pub fn segments(&self) -> String {
        format!("{}segments/", self.prefix)
    }

    pub fn segment(&self, first: u64, last: u64) -> String {
        format!("{}{first:020}-{last:020}.jsonl", self.segments())
    }

    /// The records a segment's key says it holds.
    pub fn segment_range(&self, key: &str) -> Option<(u64, u64)> {
        let name = key.strip_prefix(&self.segments())?.strip_suffix(".jsonl")?;
        let (first, last) = name.split_once('-')?;
        Some((first.parse().ok()?, last.parse().ok()?))
    }

    /// The folder of the chain signed by `public_key` (base64, as `audit verify` takes it).
    pub fn checkpoints(&self, public_key: &str) -> String {
        let fingerprint = hex::encode(&Sha256::digest(public_key.trim().as_bytes())[..8]);
        format!("{}checkpoints/{fingerprint}/", self.prefix)
    }

    pub fn checkpoint(&self, public_key: &str, number: u64) -> String {
        format!("{}{number:020}.json", self.checkpoints(public_key))
    }

    /// The number a checkpoint's key says it has.
    pub fn checkpoint_number(&self, public_key: &str, key: &str) -> Option<u64> {
        key.strip_prefix(&self.checkpoints(public_key))?.strip_suffix(".json")?.parse().ok()
    }
}

/// `s3://bucket/prefix` as bucket and prefix.
pub fn parse_s3_url(url: &str) -> Result<(String, String), String> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| format!("{url}: expected s3://bucket/prefix"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("{url}: the bucket is missing"));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

#[cfg(test)]
mod memory;
#[cfg(test)]
mod tests_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_in_order_and_read_back() {
        let layout = Layout::new("audit");
        assert_eq!(layout.segment(1, 12), "audit/segments/00000000000000000001-00000000000000000012.jsonl");
        assert!(layout.segment(9, 9) < layout.segment(10, 10), "zero-padded: 9 sorts before 10");
        assert_eq!(layout.segment_range(&layout.segment(13, 20)), Some((13, 20)));
        assert_eq!(layout.segment_range("audit/segments/x.jsonl"), None);
        assert_eq!(
            layout.segment_range("other/segments/00000000000000000001-00000000000000000002.jsonl"),
            None
        );
        let key = layout.checkpoint("PUBKEY", 7);
        assert!(
            key.starts_with("audit/checkpoints/") && key.ends_with("/00000000000000000007.json"),
            "{key}"
        );
        assert_eq!(layout.checkpoint_number("PUBKEY", &key), Some(7));
        assert_eq!(layout.checkpoint_number("ANOTHER", &key), None, "a chain per signing key");
        for (prefix, folder) in [("", ""), ("a/", "a/"), ("/a/b", "a/b/")] {
            assert_eq!(Layout::new(prefix).segments(), format!("{folder}segments/"));
        }
    }

    #[test]
    fn an_archive_url_names_a_bucket_and_a_prefix() {
        assert_eq!(parse_s3_url("s3://b/p/q"), Ok(("b".into(), "p/q".into())));
        assert_eq!(parse_s3_url("s3://b"), Ok(("b".into(), String::new())));
        assert!(parse_s3_url("https://b/p").is_err());
        assert!(parse_s3_url("s3:///p").is_err());
    }
}
