//! The archive in an S3 bucket with Object Lock: every object is put in compliance mode with a
//! retention date, so until then no one can change or delete that version, and only if the key is
//! new (`If-None-Match: *`), so the operator never writes over anything itself. The IAM policy
//! (`iam-policy --audit-bucket`) allows exactly the calls made here; a test keeps the two in step.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ObjectLockEnabled, ObjectLockMode};

use super::{Archive, ArchiveError, Listed};

pub struct S3Archive {
    s3: Client,
    bucket: String,
    retention: Duration,
}

/// What went wrong, in a line: the service's code and message, or the transport's error.
fn unavailable<E: ProvideErrorMetadata + std::error::Error + 'static>(
    what: &str,
    e: SdkError<E, HttpResponse>,
) -> ArchiveError {
    let why = match e.as_service_error() {
        Some(service) => {
            format!("{} ({})", service.message().unwrap_or("no message"), service.code().unwrap_or("?"))
        }
        None => DisplayErrorContext(&e).to_string(),
    };
    ArchiveError::Unavailable(format!("{what}: {why}"))
}

impl S3Archive {
    /// Objects are locked for `retention` from when they are written.
    pub fn new(shared: &aws_config::SdkConfig, bucket: &str, retention: Duration) -> Self {
        // Path-style addressing works with every endpoint, moto's included.
        let config = aws_sdk_s3::config::Builder::from(shared).force_path_style(true).build();
        S3Archive { s3: Client::from_conf(config), bucket: bucket.to_string(), retention }
    }

    /// With the credentials, region and endpoint of the standard AWS configuration (environment,
    /// profile, instance role).
    pub async fn from_environment(bucket: &str, retention: Duration) -> Self {
        Self::new(&aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await, bucket, retention)
    }

    /// Fails unless the bucket has Object Lock turned on: without it nothing stops a rewrite, and
    /// an archive that only looks safe is worse than none.
    pub async fn check_locking(&self) -> Result<(), ArchiveError> {
        let bucket = &self.bucket;
        let enabled = match self.s3.get_object_lock_configuration().bucket(bucket).send().await {
            Ok(answer) => {
                answer.object_lock_configuration.and_then(|c| c.object_lock_enabled)
                    == Some(ObjectLockEnabled::Enabled)
            }
            Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") => false,
            Err(e) => {
                return Err(unavailable(
                    &format!("reading the Object Lock configuration of bucket {bucket}"),
                    e,
                ));
            }
        };
        if !enabled {
            return Err(ArchiveError::Unavailable(format!(
                "bucket {bucket} has no Object Lock: create it with Object Lock enabled (aws s3api create-bucket --object-lock-enabled-for-bucket)"
            )));
        }
        Ok(())
    }

    fn retain_until(&self) -> DateTime {
        DateTime::from(SystemTime::now() + self.retention)
    }

    /// The first version stored at `key`, if there is one.
    async fn original(&self, key: &str) -> Result<Option<Vec<u8>>, ArchiveError> {
        let listed = self.list(key).await?.into_iter().find(|l| l.key == key);
        match listed.and_then(|l| l.versions.into_iter().next()) {
            Some(version) => Ok(Some(self.read(key, &version).await?)),
            None => Ok(None),
        }
    }
}

fn entry<'a>(listed: &'a mut BTreeMap<String, Listed>, key: &str) -> &'a mut Listed {
    let new = || Listed { key: key.to_string(), versions: Vec::new(), delete_markers: 0 };
    listed.entry(key.to_string()).or_insert_with(new)
}

#[async_trait]
impl Archive for S3Archive {
    async fn put_once(&self, key: &str, body: Vec<u8>) -> Result<(), ArchiveError> {
        let put = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(self.retain_until())
            .body(ByteStream::from(body.clone()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            // Already there: a retried copy whose first attempt landed, or someone else's object.
            Err(e) if e.code() == Some("PreconditionFailed") => match self.original(key).await? {
                Some(stored) if stored == body => Ok(()),
                _ => Err(ArchiveError::Conflict { key: key.to_string() }),
            },
            Err(e) => Err(unavailable(&format!("storing s3://{}/{key}", self.bucket), e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, ArchiveError> {
        let mut listed: BTreeMap<String, Listed> = BTreeMap::new();
        let (mut key_marker, mut version_marker) = (None, None);
        loop {
            let page = self
                .s3
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| unavailable(&format!("listing s3://{}/{prefix}", self.bucket), e))?;
            // Versions come newest first within a key (and on later pages older still): each goes in front.
            for version in page.versions() {
                let (Some(key), Some(id)) = (version.key(), version.version_id()) else { continue };
                entry(&mut listed, key).versions.insert(0, id.to_string());
            }
            for marker in page.delete_markers() {
                let Some(key) = marker.key() else { continue };
                entry(&mut listed, key).delete_markers += 1;
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
        }
        Ok(listed.into_values().collect())
    }

    async fn read(&self, key: &str, version: &str) -> Result<Vec<u8>, ArchiveError> {
        let what = || format!("reading s3://{}/{key} (version {version})", self.bucket);
        let object = self.s3.get_object().bucket(&self.bucket).key(key).version_id(version).send().await;
        let body = object.map_err(|e| unavailable(&what(), e))?.body.collect().await;
        let body = body.map_err(|e| ArchiveError::Unavailable(format!("{}: {e}", what())))?;
        Ok(body.into_bytes().to_vec())
    }
}
