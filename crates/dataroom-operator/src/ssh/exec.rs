//! Running one command on an open connection: output captured up to a cap (with the full byte
//! counts), the exit reported as a code, a signal or unknown (never assumed 0), and the remote
//! command killed when it outlives its timeout.

use std::time::{Duration, Instant};

use russh::{ChannelMsg, Sig};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Connection, SshError};

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub timeout: Duration,
    /// Bytes kept of each of stdout and stderr.
    pub output_cap: usize,
}

/// How the command ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum Exit {
    Code(u32),
    Signal(String),
    /// The server never said (the channel closed, or the command timed out).
    Unknown,
}

/// Which of a command's outputs a piece of output is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Clone, Debug, Default)]
pub struct Captured {
    pub kept: Vec<u8>,
    /// Every byte the command wrote, kept or not.
    pub total: u64,
    hasher: Sha256,
}

impl Captured {
    /// Counts and hashes `data`, keeps what fits under `cap`, and returns that part.
    fn push<'d>(&mut self, data: &'d [u8], cap: usize) -> &'d [u8] {
        self.total += data.len() as u64;
        self.hasher.update(data);
        let room = cap.saturating_sub(self.kept.len());
        let kept = &data[..data.len().min(room)];
        self.kept.extend_from_slice(kept);
        kept
    }

    /// SHA-256 (hex) of everything the command wrote, kept or not.
    pub fn sha256(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    pub fn truncated(&self) -> bool {
        self.total > self.kept.len() as u64
    }
}

#[derive(Clone, Debug)]
pub struct ExecOutput {
    pub exit: Exit,
    pub stdout: Captured,
    pub stderr: Captured,
    pub duration: Duration,
    pub timed_out: bool,
}

impl ExecOutput {
    pub fn succeeded(&self) -> bool {
        self.exit == Exit::Code(0)
    }
}

impl Connection {
    pub async fn exec(&self, command: &str, limits: Limits) -> Result<ExecOutput, SshError> {
        self.exec_observed(command, limits, |_, _| {}).await
    }

    /// `exec`, handing `seen` each piece of output as it arrives (the part kept under the cap).
    pub async fn exec_observed(
        &self,
        command: &str,
        limits: Limits,
        mut seen: impl FnMut(Stream, &[u8]) + Send,
    ) -> Result<ExecOutput, SshError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + limits.timeout;
        let mut channel = self.open_session().await?;
        channel.exec(true, command).await?;
        let (mut stdout, mut stderr) = (Captured::default(), Captured::default());
        let mut exit = Exit::Unknown;
        let mut timed_out = false;
        loop {
            match tokio::time::timeout_at(deadline, channel.wait()).await {
                Err(_) => {
                    timed_out = true;
                    // Kill the remote command; closing the channel also ends it where signals are
                    // not supported.
                    let _ = channel.signal(Sig::KILL).await;
                    let _ = channel.close().await;
                    break;
                }
                Ok(None) => break,
                Ok(Some(ChannelMsg::Data { data })) => {
                    seen(Stream::Stdout, stdout.push(&data, limits.output_cap));
                }
                Ok(Some(ChannelMsg::ExtendedData { data, ext: 1 })) => {
                    seen(Stream::Stderr, stderr.push(&data, limits.output_cap));
                }
                Ok(Some(ChannelMsg::ExitStatus { exit_status })) => exit = Exit::Code(exit_status),
                Ok(Some(ChannelMsg::ExitSignal { signal_name, .. })) => {
                    exit = Exit::Signal(signal(signal_name))
                }
                Ok(Some(_)) => {}
            }
        }
        Ok(ExecOutput { exit, stdout, stderr, duration: started.elapsed(), timed_out })
    }
}

fn signal(sig: Sig) -> String {
    match sig {
        Sig::Custom(name) => name,
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::Captured;

    #[test]
    fn output_is_kept_up_to_the_cap_and_counted_in_full() {
        let mut out = Captured::default();
        out.push(b"hello ", 8);
        out.push(b"world", 8);
        assert_eq!((out.kept.as_slice(), out.total, out.truncated()), (&b"hello wo"[..], 11, true));
        let whole = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"; // sha256("hello world")
        assert_eq!(out.sha256(), whole, "the hash covers what was cut off too");
        let mut small = Captured::default();
        small.push(b"ok", 8);
        assert!(!small.truncated());
    }
}
