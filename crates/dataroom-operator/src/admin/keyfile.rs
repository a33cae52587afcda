//! The keys the API accepts, read again whenever the keys file changes: a removed or edited line
//! stops working within a poll interval (a second), without a restart. A file that does not parse
//! is refused and the last good keys stay (a log line, a metric, an audit record); each reload
//! that is taken is audited with the names and fingerprints that came and went, never a hash.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::json;

use super::auth::AdminKeys;
use crate::controller::Shared;

/// How often the keys file is read.
pub const POLL: Duration = Duration::from_secs(1);

/// The keys in force, replaced whole on a reload.
#[derive(Clone)]
pub struct LiveKeys(Arc<RwLock<Arc<AdminKeys>>>);

impl LiveKeys {
    pub fn new(keys: AdminKeys) -> Self {
        LiveKeys(Arc::new(RwLock::new(Arc::new(keys))))
    }

    pub fn current(&self) -> Arc<AdminKeys> {
        self.0.read().unwrap().clone()
    }

    fn replace(&self, keys: AdminKeys) {
        *self.0.write().unwrap() = Arc::new(keys);
    }
}

/// What a changed file means for the keys in force.
#[derive(Debug, PartialEq)]
pub enum Reload {
    /// The keys are the same (a comment or the order changed): nothing to do.
    Same,
    /// New keys, with the `(name, fingerprint)`s added and removed (an edited line is both).
    Replace { keys: AdminKeys, added: Vec<(String, String)>, removed: Vec<(String, String)> },
    /// The file does not parse: the keys in force stay.
    Refuse(String),
}

/// Decides what the file's new `text` does to the keys `now` in force.
pub fn reload(now: &AdminKeys, text: &str) -> Reload {
    let keys = match AdminKeys::parse(text) {
        Ok(keys) => keys,
        Err(why) => return Reload::Refuse(why),
    };
    if keys == *now {
        return Reload::Same;
    }
    let (before, after) = (now.names(), keys.names());
    let added = after.iter().filter(|k| !before.contains(k)).cloned().collect();
    let removed = before.iter().filter(|k| !after.contains(k)).cloned().collect();
    Reload::Replace { keys, added, removed }
}

/// Reads `path` every [`POLL`] and applies what changed to `keys`, until dropped.
pub async fn watch(path: PathBuf, keys: LiveKeys, shared: Arc<Shared>) {
    // Nothing read yet: the first read is checked against the keys in force, so a change made
    // between loading them and this task's start is not missed.
    let mut last: Option<Vec<u8>> = None;
    let mut tick = tokio::time::interval(POLL);
    loop {
        tick.tick().await;
        let text = match tokio::fs::read(&path).await {
            Ok(text) if Some(&text) == last.as_ref() => continue,
            Ok(text) => text,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "admin keys file unreadable; the keys in force stay");
                continue;
            }
        };
        last = Some(text.clone());
        apply(&path, &keys, &shared, &String::from_utf8_lossy(&text)).await;
    }
}

async fn apply(path: &std::path::Path, keys: &LiveKeys, shared: &Shared, text: &str) {
    let file = path.display().to_string();
    let names = |keys: &[(String, String)]| {
        keys.iter().map(|(n, f)| json!({ "name": n, "fingerprint": f })).collect::<Vec<_>>()
    };
    match reload(&keys.current(), text) {
        Reload::Same => {}
        Reload::Replace { keys: new, added, removed } => {
            let params = json!({ "file": file, "added": names(&added), "removed": names(&removed), "keys": new.names().len() });
            keys.replace(new);
            tracing::info!(path = %file, added = added.len(), removed = removed.len(), "admin keys reloaded");
            let entry = crate::audit::Entry::new(
                "operator",
                "admin.keys.reload",
                "adminkeys//file",
                crate::audit::Outcome::Success,
            );
            // The keys are in force whether or not the record is written: revoking must not wait on the log.
            let _ = shared.append(entry.params(params)).await;
        }
        Reload::Refuse(why) => {
            shared.metrics.admin_keys_reload_failures.inc();
            tracing::error!(path = %file, error = %why, "admin keys file refused; the last good keys stay in force");
            let entry = crate::audit::Entry::new(
                "operator",
                "admin.keys.reload",
                "adminkeys//file",
                crate::audit::Outcome::Refused,
            );
            let _ = shared.append(entry.params(json!({ "file": file })).detail(why)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_adds_removes_or_is_refused() {
        let (_, alice) = AdminKeys::generate("alice", "").unwrap();
        let (_, bob) = AdminKeys::generate("bob", "").unwrap();
        let (_, bob2) = AdminKeys::generate("bob", "scopes=read").unwrap();
        let now = AdminKeys::parse(&format!("{alice}{bob}")).unwrap();
        let fingerprint = |name: &str| now.names().into_iter().find(|(n, _)| n == name).unwrap();
        assert_eq!(reload(&now, &format!("# a comment\n{alice}{bob}")), Reload::Same);
        match reload(&now, &alice) {
            Reload::Replace { keys, added, removed } => {
                assert_eq!((keys.names().len(), added, removed), (1, vec![], vec![fingerprint("bob")]));
            }
            other => panic!("{other:?}"),
        }
        match reload(&now, &format!("{alice}{}", bob2)) {
            Reload::Replace { added, removed, .. } => {
                assert_eq!(added.len(), 1, "the new key of bob");
                assert_eq!(removed, vec![fingerprint("bob")]);
            }
            other => panic!("{other:?}"),
        }
        let same_key_fewer_scopes = format!("{} scopes=read\n{bob}", alice.trim_end());
        assert!(
            matches!(reload(&now, &same_key_fewer_scopes), Reload::Replace { .. }),
            "a narrowed key is a change"
        );
        assert!(matches!(reload(&now, "alice sha256:00"), Reload::Refuse(why) if why.starts_with("line 1")));
        assert!(matches!(reload(&now, ""), Reload::Refuse(why) if why.contains("no keys")));
    }
}
