//! Admin keys: a file of named SHA-256 hashes (several at once, for rotation), and the extractor
//! every `/api` handler takes. Only `Authorization: Bearer <key>` is read; a key anywhere else is
//! ignored. Hashes are compared in constant time, and only a key's name and fingerprint are ever
//! recorded.

use std::future::{Ready, ready};
use std::path::Path;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AdminState;
use super::error::ApiError;

#[derive(Clone, Debug)]
struct Named {
    name: String,
    hash: [u8; 32],
}

/// The accepted keys, by hash.
#[derive(Clone, Debug, Default)]
pub struct AdminKeys {
    keys: Vec<Named>,
}

/// The caller, once its key matched.
#[derive(Clone, Debug, PartialEq)]
pub struct Admin {
    pub name: String,
    /// `sha256:` and the first 16 hex digits of the key's hash: enough to tell keys apart.
    pub fingerprint: String,
}

impl Admin {
    /// The actor in audit records.
    pub fn actor(&self) -> String {
        format!("admin:{} ({})", self.name, self.fingerprint)
    }
}

fn fingerprint(hash: &[u8; 32]) -> String {
    format!("sha256:{}", &hex::encode(hash)[..16])
}

impl AdminKeys {
    /// Parses lines of `NAME sha256:HEX` (blank lines and `#` comments allowed).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate().map(|(n, l)| (n + 1, l.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || format!("line {n}: expected `NAME sha256:<64 hex digits>`");
            let (name, hash) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
            let hex = hash.trim().strip_prefix("sha256:").ok_or_else(bad)?;
            let hash: [u8; 32] = hex::decode(hex).ok().and_then(|h| h.try_into().ok()).ok_or_else(bad)?;
            if keys.iter().any(|k: &Named| k.name == name) {
                return Err(format!("line {n}: the name {name} is used twice"));
            }
            keys.push(Named { name: name.to_string(), hash });
        }
        if keys.is_empty() {
            return Err("no keys: add a line `NAME sha256:<hash>` (see `dataroom-operator admin-key`)".into());
        }
        Ok(AdminKeys { keys })
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading the admin keys {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// A fresh random key and the line that accepts it under `name`.
    pub fn generate(name: &str) -> (String, String) {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let key = format!("drk_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
        let line = Self::line(name, &key);
        (key, line)
    }

    /// The keys-file line that accepts `key` under `name`.
    pub fn line(name: &str, key: &str) -> String {
        format!("{name} sha256:{}\n", hex::encode(Sha256::digest(key.as_bytes())))
    }

    /// The admin whose key this is. Every stored hash is compared, in constant time.
    pub fn check(&self, key: &str) -> Option<Admin> {
        let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut found = None;
        for named in &self.keys {
            if bool::from(named.hash.ct_eq(&hash)) {
                found = Some(named);
            }
        }
        found.map(|k| Admin { name: k.name.clone(), fingerprint: fingerprint(&k.hash) })
    }
}

fn authenticate(req: &HttpRequest) -> Result<Admin, ApiError> {
    let state = req.app_data::<web::Data<AdminState>>().expect("the admin state is configured");
    let header = req.headers().get(actix_web::http::header::AUTHORIZATION);
    let key = header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("send `Authorization: Bearer <admin key>`"))?;
    state.keys.check(key.trim()).ok_or_else(|| ApiError::unauthorized("the admin key is not accepted"))
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

#[cfg(test)]
mod tests {
    use super::AdminKeys;

    #[test]
    fn keys_match_by_hash_and_report_name_and_fingerprint() {
        let (key, line) = AdminKeys::generate("ops");
        let (old, old_line) = AdminKeys::generate("old");
        let keys = AdminKeys::parse(&format!("# rotation\n{line}\n{old_line}")).unwrap();
        let admin = keys.check(&key).unwrap();
        assert_eq!(admin.name, "ops");
        assert!(admin.fingerprint.starts_with("sha256:") && !admin.actor().contains(&key));
        assert_eq!(keys.check(&old).unwrap().name, "old");
        assert!(keys.check("drk_wrong").is_none());
        assert!(keys.check(&line).is_none(), "the hash itself is not a key");
    }

    #[test]
    fn malformed_key_files_are_refused_with_the_line() {
        assert!(AdminKeys::parse("").unwrap_err().contains("no keys"));
        assert!(AdminKeys::parse("ops deadbeef").unwrap_err().starts_with("line 1"));
        let line = AdminKeys::line("a", "k");
        assert!(AdminKeys::parse(&format!("{line}{line}")).unwrap_err().contains("twice"));
    }
}
