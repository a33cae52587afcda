//! File transfer over SFTP, streamed (never a whole file in memory) and pipelined by russh-sftp
//! (16 requests in flight each way). An upload goes to a temporary file beside its destination
//! and is renamed over it only once complete (`posix-rename@openssh.com`), so a failed or
//! oversized upload never leaves a partial file. No shell is involved anywhere.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use russh_sftp::client::{RawSftpSession, SftpSession};
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use thiserror::Error;
use tokio::io::AsyncWriteExt;

use super::{Connection, SshError};

const POSIX_RENAME: &str = "posix-rename@openssh.com";

#[derive(Debug, Error)]
pub enum TransferError {
    #[error("the file is larger than the {0}-byte limit")]
    TooLarge(u64),
    #[error("reading the upload: {0}")]
    Body(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{0} is not a regular file")]
    NotAFile(String),
    #[error("sftp: {0}")]
    Sftp(String),
    #[error(transparent)]
    Ssh(#[from] SshError),
}

fn sftp_error(e: russh_sftp::client::error::Error) -> TransferError {
    TransferError::Sftp(e.to_string())
}

impl Connection {
    /// A new channel running the `sftp` subsystem.
    async fn sftp_stream(&self) -> Result<russh::ChannelStream<russh::client::Msg>, SshError> {
        let channel = self.open_session().await?;
        channel.request_subsystem(true, "sftp").await?;
        Ok(channel.into_stream())
    }

    pub async fn sftp(&self) -> Result<SftpSession, SshError> {
        SftpSession::new(self.sftp_stream().await?).await.map_err(|e| SshError::Protocol(e.to_string()))
    }

    /// Renames `from` over `to`, replacing it atomically (plain SFTP rename refuses to replace).
    async fn replace(&self, from: &str, to: &str) -> Result<(), TransferError> {
        let raw = RawSftpSession::new(self.sftp_stream().await?);
        raw.init().await.map_err(sftp_error)?;
        let data = russh_sftp::ser::to_bytes(&(from, to)).map_err(|e| TransferError::Sftp(e.to_string()))?;
        match raw.extended(POSIX_RENAME, data.to_vec()).await.map_err(sftp_error)? {
            Packet::Status(s) if s.status_code == StatusCode::Ok => Ok(()),
            Packet::Status(s) => Err(TransferError::Sftp(format!("rename: {}", s.error_message))),
            _ => Err(TransferError::Sftp("rename: unexpected reply".into())),
        }
    }

    /// Streams `body` into `path` with `mode`, creating missing parent directories; returns the
    /// bytes written. Nothing is left at `path` (or beside it) unless the whole body arrived.
    pub async fn upload<S, E>(&self, path: &str, mode: u32, body: S, max: u64) -> Result<u64, TransferError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let sftp = self.sftp().await?;
        let (dir, name) = path.rsplit_once('/').expect("paths are absolute");
        make_dirs(&sftp, dir).await;
        let temporary = format!("{dir}/.{name}.upload-{}", uuid::Uuid::new_v4().simple());
        let flags = OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE;
        let attrs = FileAttributes { permissions: Some(mode), ..Default::default() };
        let file = sftp.open_with_flags_and_attributes(&temporary, flags, attrs).await.map_err(sftp_error)?;
        let written = write_all(file, body, max).await;
        let finished = match written {
            Ok(n) => self.finish(&sftp, &temporary, path, mode).await.map(|()| n),
            Err(e) => Err(e),
        };
        if finished.is_err() {
            let _ = sftp.remove_file(&temporary).await;
        }
        finished
    }

    async fn finish(
        &self,
        sftp: &SftpSession,
        temporary: &str,
        path: &str,
        mode: u32,
    ) -> Result<(), TransferError> {
        // The server's umask may have narrowed the mode given at open.
        let attrs = FileAttributes { permissions: Some(mode), ..Default::default() };
        sftp.set_metadata(temporary, attrs).await.map_err(sftp_error)?;
        self.replace(temporary, path).await
    }

    /// The size of the regular file at `path` and a stream of its bytes.
    pub async fn download(
        &self,
        path: &str,
    ) -> Result<(u64, impl Stream<Item = std::io::Result<Bytes>> + use<>), TransferError> {
        let sftp = self.sftp().await?;
        let metadata = sftp.metadata(path).await.map_err(|e| match e {
            russh_sftp::client::error::Error::Status(s) if s.status_code == StatusCode::NoSuchFile => {
                TransferError::NotFound(path.to_string())
            }
            e => sftp_error(e),
        })?;
        if !metadata.is_regular() {
            return Err(TransferError::NotAFile(path.to_string()));
        }
        let file = sftp.open(path).await.map_err(sftp_error)?;
        // The stream keeps the session alive until the last byte is read.
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(move |chunk| {
            let _ = &sftp;
            chunk
        });
        Ok((metadata.len(), stream))
    }
}

async fn write_all<S, E>(
    mut file: russh_sftp::client::fs::File,
    mut body: S,
    max: u64,
) -> Result<u64, TransferError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| TransferError::Body(e.to_string()))?;
        written += chunk.len() as u64;
        if written > max {
            return Err(TransferError::TooLarge(max));
        }
        file.write_all(&chunk).await.map_err(|e| TransferError::Sftp(e.to_string()))?;
    }
    file.flush().await.map_err(|e| TransferError::Sftp(e.to_string()))?;
    file.shutdown().await.map_err(|e| TransferError::Sftp(e.to_string()))?;
    Ok(written)
}

/// `mkdir -p`: creates each missing directory of `dir` (errors surface at the file's open).
async fn make_dirs(sftp: &SftpSession, dir: &str) {
    let mut path = String::new();
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        path.push('/');
        path.push_str(part);
        if !sftp.try_exists(&path).await.unwrap_or(true) {
            let _ = sftp.create_dir(&path).await;
        }
    }
}
