//! Signed checkpoints of the log's tail. The hash chain shows an edit anywhere, but not records
//! cut from the end or a whole file replaced by a fresh, self-consistent one. So the leader
//! periodically signs {sequence, head hash, time} with an Ed25519 key kept in a Secret and stores
//! it in a ConfigMap; `audit verify --checkpoint` then demands that the log still holds that record.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::Record;

/// The key of the checkpoint in its ConfigMap.
pub const CONFIGMAP_KEY: &str = "checkpoint.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: String,
    pub time: String,
    /// Base64 Ed25519 signature over [`Checkpoint::message`].
    pub signature: String,
}

impl Checkpoint {
    fn message(seq: u64, hash: &str, time: &str) -> String {
        format!("dataroom-operator audit checkpoint\n{seq}\n{hash}\n{time}\n")
    }

    /// Checks the signature against a public key given out of band (never one stored beside the
    /// checkpoint, which whoever could replace the checkpoint could replace too).
    pub fn verify_signature(&self, public_key: &str) -> Result<(), String> {
        let bytes: [u8; 32] = BASE64
            .decode(public_key.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("the public key is not 32 bytes of base64")?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|e| format!("not an Ed25519 public key: {e}"))?;
        let signature: [u8; 64] = BASE64
            .decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("the checkpoint's signature is not 64 bytes of base64")?;
        let message = Self::message(self.seq, &self.hash, &self.time);
        key.verify(message.as_bytes(), &Signature::from_bytes(&signature)).map_err(|_| {
            "the checkpoint's signature does not match: it was not signed by this key".to_string()
        })
    }

    /// What is wrong with `log` given this (verified) checkpoint: records cut from the end, or
    /// the checkpointed record replaced.
    pub fn check_log(&self, log: &Path) -> std::io::Result<Option<String>> {
        let text = std::fs::read_to_string(log)?;
        let mut last = 0;
        for line in text.lines() {
            let Ok((record, _)) = Record::open(line) else { continue };
            last = last.max(record.seq);
            if record.seq == self.seq {
                return Ok((record.hash != self.hash).then(|| {
                    format!(
                        "record {} is not the one checkpointed at {} (hash {} there, {} here): the log was replaced",
                        self.seq, self.time, self.hash, record.hash
                    )
                }));
            }
        }
        Ok(Some(format!(
            "the checkpoint of {} covers record {}, but the log ends at record {last}: records were cut from its end or the file was replaced",
            self.time, self.seq
        )))
    }
}

/// The leader's signing key.
pub struct Signer(SigningKey);

impl Signer {
    /// Reads a PKCS#8 PEM Ed25519 private key (as `audit keygen` or Helm's `genPrivateKey "ed25519"` make).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let pem = std::fs::read_to_string(path)?;
        let key = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{}: not a PKCS#8 PEM Ed25519 private key ({e})", path.display()))?;
        Ok(Signer(key))
    }

    pub fn generate() -> Self {
        Signer(SigningKey::from_bytes(&rand::random::<[u8; 32]>()))
    }

    pub fn pem(&self) -> String {
        self.0.to_pkcs8_pem(Default::default()).expect("an Ed25519 key encodes").to_string()
    }

    /// Base64 of the raw public key: what `audit verify --public-key` takes.
    pub fn public_key(&self) -> String {
        BASE64.encode(self.0.verifying_key().as_bytes())
    }

    pub fn sign(&self, seq: u64, hash: &str, time: jiff::Timestamp) -> Checkpoint {
        let time = time.to_string();
        let signature = self.0.sign(Checkpoint::message(seq, hash, &time).as_bytes());
        Checkpoint { seq, hash: hash.to_string(), time, signature: BASE64.encode(signature.to_bytes()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_only_with_its_key_and_unchanged() {
        let signer = Signer::generate();
        let reloaded = SigningKey::from_pkcs8_pem(&signer.pem()).unwrap();
        assert_eq!(BASE64.encode(reloaded.verifying_key().as_bytes()), signer.public_key());
        let checkpoint = signer.sign(7, "abc", jiff::Timestamp::UNIX_EPOCH);
        assert_eq!(checkpoint.verify_signature(&signer.public_key()), Ok(()));
        assert!(checkpoint.verify_signature(&Signer::generate().public_key()).is_err());
        let moved = Checkpoint { seq: 6, ..checkpoint.clone() };
        assert!(moved.verify_signature(&signer.public_key()).is_err());
        assert!(checkpoint.verify_signature("not base64").is_err());
    }
}
