//! Webhook notifications of chosen audit actions: each record whose action is chosen is POSTed as
//! JSON (with a Slack-compatible `text`), signed with HMAC-SHA256 over the body in
//! `X-Dataroom-Signature: sha256=<hex>`, from a queue of its own: the operation never waits for the
//! receiver. A failed delivery is retried with exponential backoff; a full queue drops the newest
//! notification (the audit log keeps the record either way).

use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::audit::Record;

/// Notifications waiting for delivery at most.
const QUEUE: usize = 1024;

/// Where and what to notify.
#[derive(Clone, Debug)]
pub struct Webhook {
    pub url: http::Uri,
    pub secret: Vec<u8>,
    /// Actions notified: exact names, or prefixes ending in `*` (`api.instance.*`).
    pub actions: Vec<String>,
    /// Deliveries of one notification at most (the first and the retries).
    pub attempts: u32,
    /// The wait before the first retry, doubled for each further one.
    pub backoff: Duration,
}

impl Webhook {
    fn wants(&self, action: &str) -> bool {
        self.actions.iter().any(|a| match a.strip_suffix('*') {
            Some(prefix) => action.starts_with(prefix),
            None => a == action,
        })
    }
}

/// The body sent for `record`.
pub fn body(record: &Record) -> Vec<u8> {
    let text = format!(
        "dataroom-operator: {} {} {} ({}){}",
        record.actor,
        record.action,
        record.target,
        record.outcome.as_str(),
        record.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
    );
    let body = json!({
        "text": text,
        "seq": record.seq, "time": record.time, "actor": record.actor, "action": record.action,
        "target": record.target, "outcome": record.outcome.as_str(), "params": record.params,
        "detail": record.detail, "hash": record.hash,
    });
    serde_json::to_vec(&body).expect("JSON serialises")
}

/// `sha256=<hex HMAC-SHA256 of body under secret>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The sending side: hands chosen records to the delivery task.
pub struct Notifier {
    webhook: Webhook,
    queue: mpsc::Sender<Vec<u8>>,
}

impl Notifier {
    /// A notifier and the task that delivers (spawn it).
    pub fn new(webhook: Webhook) -> (Self, impl std::future::Future<Output = ()>) {
        let (queue, pending) = mpsc::channel(QUEUE);
        let task = deliver(webhook.clone(), pending);
        (Notifier { webhook, queue }, task)
    }

    /// Queues `record` if its action is chosen; never waits.
    pub fn notify(&self, record: &Record) {
        if self.webhook.wants(&record.action) && self.queue.try_send(body(record)).is_err() {
            tracing::warn!(action = %record.action, seq = record.seq, "webhook queue full; notification dropped");
        }
    }
}

async fn deliver(webhook: Webhook, mut pending: mpsc::Receiver<Vec<u8>>) {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider)
        .map(|b| b.https_or_http().enable_http1().build());
    let https = match https {
        Ok(connector) => connector,
        Err(e) => {
            tracing::error!(error = %e, "no TLS roots for webhooks; notifications are off");
            return;
        }
    };
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    while let Some(body) = pending.recv().await {
        let signature = signature(&webhook.secret, &body);
        let mut wait = webhook.backoff;
        for attempt in 1..=webhook.attempts.max(1) {
            let request = http::Request::post(webhook.url.clone())
                .header("Content-Type", "application/json")
                .header("X-Dataroom-Signature", &signature)
                .body(Full::new(Bytes::from(body.clone())))
                .expect("a valid request");
            let sent = tokio::time::timeout(Duration::from_secs(10), client.request(request)).await;
            match sent {
                Ok(Ok(response)) if response.status().is_success() => break,
                outcome => {
                    let why = match outcome {
                        Ok(Ok(response)) => format!("status {}", response.status()),
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "no answer in 10 s".into(),
                    };
                    tracing::warn!(attempt, %why, "webhook delivery failed");
                    if attempt < webhook.attempts {
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_chosen_by_name_or_prefix() {
        let hook = Webhook {
            url: "http://127.0.0.1/".parse().unwrap(),
            secret: b"s".to_vec(),
            actions: vec!["launch".into(), "api.instance.*".into()],
            attempts: 1,
            backoff: Duration::from_millis(1),
        };
        assert!(hook.wants("launch") && hook.wants("api.instance.exec"));
        assert!(!hook.wants("launched") && !hook.wants("api.room.start"));
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        let mac = signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(mac, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
