//! The one way an imperative operation is audited (every mutating admin route, the orphan
//! collector): a refusal before anything is done is one `refused` record; otherwise the intent
//! (`started`) is on disk before the effect runs, and the outcome after it. If the intent cannot be
//! written the effect does not run; if the outcome cannot be written the caller is told so.

use std::fmt::Display;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Instant;

use serde_json::Value;

use super::Shared;
use crate::audit::{AuditError, Entry, Outcome};

/// How a failed operation is recorded.
pub trait Failed: Display + From<AuditError> {
    /// `Refused` when the caller asked for something not allowed, `Failure` otherwise.
    fn outcome(&self) -> Outcome;

    /// The outcome of an operation that took effect could not be written.
    fn unrecorded(e: AuditError) -> Self {
        e.into()
    }
}

impl Failed for super::Error {
    fn outcome(&self) -> Outcome {
        Outcome::Failure
    }
}

/// One operation, named for its records.
pub struct Operation<'a> {
    shared: &'a Shared,
    actor: String,
    action: String,
    target: String,
    params: Value,
    /// When the intent was recorded.
    started: OnceLock<Instant>,
}

impl Shared {
    pub fn operation(&self, actor: &str, action: &str, target: &str, params: Value) -> Operation<'_> {
        let (actor, action, target) = (actor.to_string(), action.to_string(), target.to_string());
        Operation { shared: self, actor, action, target, params, started: OnceLock::new() }
    }
}

impl Operation<'_> {
    /// Records an attempt that ended in `error` before anything was done, and hands the error back
    /// (or the audit log's, if the record cannot be written).
    pub async fn refused<E: Failed>(&self, error: E) -> E {
        match self.record(error.outcome(), None, Some(error.to_string())).await {
            Ok(()) => error,
            Err(audit) => audit.into(),
        }
    }

    /// Runs `effect` between its intent and its outcome.
    pub async fn run<T, E: Failed>(&self, effect: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        self.run_with(effect, |_| None).await
    }

    /// `run`, with the outcome's parameters taken from what the effect returned (sizes, hashes).
    pub async fn run_with<T, E: Failed>(
        &self,
        effect: impl Future<Output = Result<T, E>>,
        outcome_params: impl FnOnce(&T) -> Option<Value>,
    ) -> Result<T, E> {
        self.start().await?;
        let result = effect.await;
        let params = result.as_ref().ok().and_then(outcome_params).unwrap_or_else(|| self.params.clone());
        self.finish(result, params).await
    }

    /// Records the intent; the effect may run once this returns.
    pub async fn start(&self) -> Result<(), AuditError> {
        self.record(Outcome::Started, None, None).await?;
        self.started.get_or_init(Instant::now);
        Ok(())
    }

    /// Records how a started operation ended, with `params` (what it did, whatever the result).
    pub async fn finish<T, E: Failed>(&self, result: Result<T, E>, params: Value) -> Result<T, E> {
        let (outcome, detail) = match &result {
            Ok(_) => (Outcome::Success, None),
            Err(e) => (e.outcome(), Some(e.to_string())),
        };
        self.record(outcome, Some(params), detail).await.map_err(E::unrecorded)?;
        result
    }

    /// Writes one record of this operation (on disk before this returns).
    pub async fn record(
        &self,
        outcome: Outcome,
        params: Option<Value>,
        detail: Option<String>,
    ) -> Result<(), AuditError> {
        if let (Some(started), false) = (self.started.get(), outcome == Outcome::Started) {
            self.shared.metrics.operation_finished(&self.action, started.elapsed().as_secs_f64());
        }
        let params = params.unwrap_or_else(|| self.params.clone());
        let mut entry = Entry::new(&self.actor, &self.action, &self.target, outcome).params(params);
        entry.detail = detail;
        self.shared.append(entry).await
    }
}
