//! What a room pushes to its instance: the configuration file and the listed files, read from the
//! spec and from ConfigMaps and Secrets in the room's namespace. Contents are never logged, and
//! are known outside this module only by a keyed hash.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use sha2::{Digest, Sha256};

use crate::controller::{Context, Error, Result};
use crate::crd::{DataRoomSpec, KeyRef};
use crate::ssh::check_path;

/// One file to write. No `Debug`: the bytes may come from a Secret.
pub struct Payload {
    pub path: String,
    pub mode: u32,
    pub bytes: Vec<u8>,
}

/// Everything pushed to an instance, the configuration first.
pub struct Content {
    pub payloads: Vec<Payload>,
}

impl Content {
    /// `sha256:` and the hash of this content as pushed to `instance_id` for the room `uid`.
    /// Keyed by both, so that a new instance needs a new push and the hash of a low-entropy
    /// Secret cannot be looked up in a table.
    pub fn hash(&self, uid: &str, instance_id: &str) -> String {
        let mut hash = Sha256::new();
        for part in [uid.as_bytes(), instance_id.as_bytes()] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        for p in &self.payloads {
            hash.update((p.path.len() as u64).to_be_bytes());
            hash.update(p.path.as_bytes());
            hash.update(p.mode.to_be_bytes());
            hash.update((p.bytes.len() as u64).to_be_bytes());
            hash.update(&p.bytes);
        }
        format!("sha256:{}", hex::encode(hash.finalize()))
    }

    pub fn bytes(&self) -> usize {
        self.payloads.iter().map(|p| p.bytes.len()).sum()
    }
}

/// Parses an octal mode such as `0644`.
pub fn parse_mode(text: &str) -> Option<u32> {
    u32::from_str_radix(text, 8).ok().filter(|m| *m <= 0o777)
}

/// What in the spec can never work, said so that the user knows what to change.
pub fn check(name: &str, spec: &DataRoomSpec) -> Result<(), String> {
    let label = (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !label {
        return Err(format!(
            "metadata.name {name:?}: a DataRoom's name must be a DNS label (at most 63 lowercase letters, digits and '-'), as it names the instance's tags"
        ));
    }
    check_path(&spec.config_path).map_err(|why| format!("spec.configPath {:?} {why}", spec.config_path))?;
    if let Some(config) = &spec.config {
        let sources =
            [config.inline.is_some(), config.config_map_key_ref.is_some(), config.secret_key_ref.is_some()];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err("spec.config: set exactly one of inline, configMapKeyRef and secretKeyRef".into());
        }
    }
    let mut seen = vec![spec.config_path.as_str()];
    for (i, file) in spec.files.iter().enumerate() {
        check_path(&file.path).map_err(|why| format!("spec.files[{i}].path {:?} {why}", file.path))?;
        if seen.contains(&file.path.as_str()) {
            return Err(format!("spec.files[{i}].path {:?} is written twice", file.path));
        }
        seen.push(&file.path);
        if parse_mode(&file.mode).is_none() {
            return Err(format!("spec.files[{i}].mode {:?} is not an octal mode such as 0644", file.mode));
        }
        if file.config_map_key_ref.is_some() == file.secret_key_ref.is_some() {
            return Err(format!("spec.files[{i}]: set exactly one of configMapKeyRef and secretKeyRef"));
        }
    }
    let health = &spec.health_check.path;
    if health.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!("spec.healthCheck.path {health:?} has spaces or control characters"));
    }
    Ok(())
}

/// Reads the content of a room whose spec passed `check`. A missing ConfigMap, Secret or key is a
/// `ConfigSource` step error (retried with backoff: they are not watched).
pub async fn resolve(ctx: &Context, namespace: &str, spec: &DataRoomSpec) -> Result<Content> {
    let mut payloads = Vec::with_capacity(spec.files.len() + 1);
    if let Some(config) = &spec.config {
        let bytes = match (&config.inline, &config.config_map_key_ref, &config.secret_key_ref) {
            (Some(inline), _, _) => {
                let mut text = serde_json::to_vec_pretty(inline).expect("JSON values serialise");
                text.push(b'\n');
                text
            }
            (None, Some(key), _) => config_map(ctx, namespace, key).await?,
            (None, None, Some(key)) => secret(ctx, namespace, key).await?,
            (None, None, None) => unreachable!("check requires one source"),
        };
        payloads.push(Payload { path: spec.config_path.clone(), mode: 0o600, bytes });
    }
    for file in &spec.files {
        let bytes = match (&file.config_map_key_ref, &file.secret_key_ref) {
            (Some(key), _) => config_map(ctx, namespace, key).await?,
            (None, Some(key)) => secret(ctx, namespace, key).await?,
            (None, None) => unreachable!("check requires one source"),
        };
        let mode = parse_mode(&file.mode).expect("check parsed the mode");
        payloads.push(Payload { path: file.path.clone(), mode, bytes });
    }
    Ok(Content { payloads })
}

fn missing(what: String) -> Error {
    Error::ConfigSource(format!("{what}; create it, or change the room's spec"))
}

async fn config_map(ctx: &Context, namespace: &str, key: &KeyRef) -> Result<Vec<u8>> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(map) = api.get_opt(&key.name).await? else {
        return Err(missing(format!("ConfigMap {namespace}/{} does not exist", key.name)));
    };
    let text = map.data.and_then(|mut d| d.remove(&key.key)).map(String::into_bytes);
    let binary = || map.binary_data.and_then(|mut d| d.remove(&key.key)).map(|b| b.0);
    text.or_else(binary)
        .ok_or_else(|| missing(format!("ConfigMap {namespace}/{} has no key {:?}", key.name, key.key)))
}

async fn secret(ctx: &Context, namespace: &str, key: &KeyRef) -> Result<Vec<u8>> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(secret) = api.get_opt(&key.name).await? else {
        return Err(missing(format!("Secret {namespace}/{} does not exist", key.name)));
    };
    let data = secret.data.and_then(|mut d| d.remove(&key.key)).map(|b| b.0);
    // A real API server folds stringData into data; the sandbox's emulator may not.
    let text = || secret.string_data.and_then(|mut d| d.remove(&key.key)).map(String::into_bytes);
    data.or_else(text)
        .ok_or_else(|| missing(format!("Secret {namespace}/{} has no key {:?}", key.name, key.key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> DataRoomSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn bad_specs_say_what_to_change() {
        let ok = spec(serde_json::json!({"config": {"inline": {"a": 1}}}));
        assert_eq!(check("room-1", &ok), Ok(()));
        assert!(check("Room.1", &ok).unwrap_err().contains("DNS label"));
        let cases = [
            (serde_json::json!({"configPath": "/etc/../passwd"}), "spec.configPath"),
            (serde_json::json!({"config": {}}), "exactly one of inline"),
            (
                serde_json::json!({"files": [{"path": "/a", "mode": "0999", "configMapKeyRef": {"name": "c", "key": "k"}}]}),
                "octal",
            ),
            (serde_json::json!({"files": [{"path": "/a"}]}), "exactly one of configMapKeyRef"),
            (
                serde_json::json!({"files": [{"path": "/etc/dataroom/config.json", "secretKeyRef": {"name": "s", "key": "k"}}]}),
                "twice",
            ),
            (serde_json::json!({"healthCheck": {"path": "/a b"}}), "healthCheck.path"),
        ];
        for (json, says) in cases {
            let why = check("room", &spec(json.clone())).unwrap_err();
            assert!(why.contains(says), "{json}: {why}");
        }
    }

    #[test]
    fn the_hash_follows_content_mode_and_instance() {
        let content = |bytes: &[u8], mode| Content {
            payloads: vec![Payload { path: "/etc/a".into(), mode, bytes: bytes.to_vec() }],
        };
        let base = content(b"x", 0o600).hash("uid", "i-1");
        assert!(base.starts_with("sha256:") && base.len() == 71);
        assert_eq!(base, content(b"x", 0o600).hash("uid", "i-1"));
        assert_ne!(base, content(b"y", 0o600).hash("uid", "i-1"));
        assert_ne!(base, content(b"x", 0o644).hash("uid", "i-1"));
        assert_ne!(base, content(b"x", 0o600).hash("uid", "i-2"));
        assert_ne!(base, content(b"x", 0o600).hash("other", "i-1"));
    }
}
