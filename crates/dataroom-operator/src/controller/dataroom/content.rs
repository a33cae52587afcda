//! What a room pushes to its instance: the configuration file and the listed files, read from the
//! spec and from ConfigMaps and Secrets in the room's namespace that opt in with the label
//! `dataroom.dev/pushable: "true"`. Contents are never logged, and are known outside this module
//! only by an HMAC under a key that only the operator holds.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, ResourceExt};
use rand::RngCore;
use sha2::Sha256;

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

/// The label a ConfigMap or Secret carries to let rooms push it: without it, a room's author could
/// copy any Secret of the namespace onto an instance they control.
pub const PUSHABLE_LABEL: &str = "dataroom.dev/pushable";

/// The operator's key for content hashes (`status.configHash`). Without it a hash cannot be
/// recomputed, so a status is no oracle for guesses at a Secret's value. No `Debug`.
pub struct ContentKey(Vec<u8>);

impl ContentKey {
    /// The key in `path`, made there first (32 random bytes, mode 0600) if there is none.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(key) if key.len() >= 32 => return Ok(ContentKey(key)),
            Ok(_) => return Err(std::io::Error::other(format!("{}: shorter than 32 bytes", path.display()))),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
        let key = Self::random();
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        file.write_all(&key.0)?;
        file.sync_all()?;
        Ok(key)
    }

    pub fn random() -> Self {
        let mut key = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        ContentKey(key)
    }
}

impl Content {
    /// `hmac-sha256:` and the MAC of this content as pushed to `instance_id` for the room `uid`,
    /// under the operator's key: a new instance needs a new push, and whoever reads the status
    /// cannot test guesses of a Secret's value against it.
    pub fn hash(&self, key: &ContentKey, uid: &str, instance_id: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC takes a key of any length");
        for part in [uid.as_bytes(), instance_id.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        for p in &self.payloads {
            mac.update(&(p.path.len() as u64).to_be_bytes());
            mac.update(p.path.as_bytes());
            mac.update(&p.mode.to_be_bytes());
            mac.update(&(p.bytes.len() as u64).to_be_bytes());
            mac.update(&p.bytes);
        }
        format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
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

/// Refuses a source that has not opted in to being pushed.
fn pushable(kind: &str, namespace: &str, object: &impl ResourceExt) -> Result<()> {
    match object.labels().get(PUSHABLE_LABEL).map(String::as_str) {
        Some("true") => Ok(()),
        _ => Err(Error::ConfigSource(format!(
            "{kind} {namespace}/{} is not labelled {PUSHABLE_LABEL}=true; label it to let rooms push it",
            object.name_any()
        ))),
    }
}

async fn config_map(ctx: &Context, namespace: &str, key: &KeyRef) -> Result<Vec<u8>> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(map) = api.get_opt(&key.name).await? else {
        return Err(missing(format!("ConfigMap {namespace}/{} does not exist", key.name)));
    };
    pushable("ConfigMap", namespace, &map)?;
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
    pushable("Secret", namespace, &secret)?;
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
        let key = ContentKey::random();
        let base = content(b"x", 0o600).hash(&key, "uid", "i-1");
        assert!(base.starts_with("hmac-sha256:") && base.len() == 76, "{base}");
        assert_eq!(base, content(b"x", 0o600).hash(&key, "uid", "i-1"));
        assert_ne!(base, content(b"y", 0o600).hash(&key, "uid", "i-1"));
        assert_ne!(base, content(b"x", 0o644).hash(&key, "uid", "i-1"));
        assert_ne!(base, content(b"x", 0o600).hash(&key, "uid", "i-2"));
        assert_ne!(base, content(b"x", 0o600).hash(&key, "other", "i-1"));
        // Whoever reads the status but lacks the operator's key cannot recompute it.
        assert_ne!(base, content(b"x", 0o600).hash(&ContentKey::random(), "uid", "i-1"));
    }

    #[test]
    fn the_key_is_made_once_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("content-key");
        let first = ContentKey::load_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(ContentKey::load_or_create(&path).unwrap().0, first.0);
        std::fs::write(&path, b"short").unwrap();
        assert!(ContentKey::load_or_create(&path).is_err(), "a damaged key is not silently replaced");
    }
}
