//! Signed checkpoints of the log's tail. The hash chain shows an edit anywhere, but not records
//! cut from the end or a whole file replaced by a fresh, self-consistent one. So the leader signs
//! {number, sequence, head hash, time, previous checkpoint's signature} with an Ed25519 key kept
//! in a Secret every interval, quiet or not, and stores it in a ConfigMap; `audit verify
//! --checkpoint` then demands that the log still holds that record. The checkpoints form a chain
//! (as CloudTrail's digest files do): each names the one before it, so a verifier that remembers
//! the highest it has seen (`--state`) refuses an older one put back with the log cut to match, and
//! two checkpoints in a row with the same record show that nothing was logged between their times.

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
    /// Counts the checkpoints of the chain from 1.
    #[serde(default)]
    pub number: u64,
    pub seq: u64,
    pub hash: String,
    pub time: String,
    /// The signature of the checkpoint before this one; empty for the first.
    #[serde(default)]
    pub prev: String,
    /// Base64 Ed25519 signature over [`Checkpoint::message`].
    pub signature: String,
}

impl Checkpoint {
    fn message(&self) -> String {
        let Checkpoint { number, seq, hash, time, prev, .. } = self;
        format!("dataroom-operator audit checkpoint v2\n{number}\n{seq}\n{hash}\n{time}\n{prev}\n")
    }

    /// Whether `self` may follow `seen` (the highest checkpoint a verifier has accepted): not
    /// older, the same one again only unchanged, the next one only naming it as its previous, and
    /// never covering less of the log.
    pub fn follows(&self, seen: &Checkpoint) -> Result<(), String> {
        let refuse = |why: String| Err(format!("checkpoint {} ({}): {why}", self.number, self.time));
        if self.number < seen.number {
            return refuse(format!(
                "older than checkpoint {} ({}) already verified: an earlier checkpoint was put back",
                seen.number, seen.time
            ));
        }
        if self.number == seen.number && self.signature != seen.signature {
            return refuse(format!("differs from the checkpoint {} already verified", seen.number));
        }
        if self.number == seen.number + 1 && self.prev != seen.signature {
            return refuse(format!("does not follow checkpoint {} already verified", seen.number));
        }
        if self.seq < seen.seq {
            return refuse(format!(
                "covers record {}, fewer than the {} of checkpoint {}: the log was cut back",
                self.seq, seen.seq, seen.number
            ));
        }
        Ok(())
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
        let message = self.message();
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

    /// The checkpoint after `previous` (the first of a chain when `None`) of record `seq`.
    pub fn sign(
        &self,
        previous: Option<&Checkpoint>,
        seq: u64,
        hash: &str,
        time: jiff::Timestamp,
    ) -> Checkpoint {
        let mut checkpoint = Checkpoint {
            number: previous.map_or(1, |p| p.number + 1),
            seq,
            hash: hash.to_string(),
            time: time.to_string(),
            prev: previous.map(|p| p.signature.clone()).unwrap_or_default(),
            signature: String::new(),
        };
        checkpoint.signature = BASE64.encode(self.0.sign(checkpoint.message().as_bytes()).to_bytes());
        checkpoint
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
        let checkpoint = signer.sign(None, 7, "abc", jiff::Timestamp::UNIX_EPOCH);
        assert_eq!(checkpoint.verify_signature(&signer.public_key()), Ok(()));
        assert!(checkpoint.verify_signature(&Signer::generate().public_key()).is_err());
        let moved = Checkpoint { seq: 6, ..checkpoint.clone() };
        assert!(moved.verify_signature(&signer.public_key()).is_err());
        assert!(checkpoint.verify_signature("not base64").is_err());
        let relinked = Checkpoint { prev: "another".into(), ..checkpoint.clone() };
        assert!(relinked.verify_signature(&signer.public_key()).is_err(), "the link is signed");
    }

    #[test]
    fn a_verifier_that_remembers_refuses_a_checkpoint_put_back() {
        let signer = Signer::generate();
        let at = |s: u64| jiff::Timestamp::from_second(s as i64).unwrap();
        let first = signer.sign(None, 10, "h10", at(60));
        let quiet = signer.sign(Some(&first), 10, "h10", at(120));
        let third = signer.sign(Some(&quiet), 12, "h12", at(180));
        assert_eq!((first.number, quiet.number, third.number), (1, 2, 3));
        assert_eq!(quiet.prev, first.signature);
        assert!(quiet.follows(&first).is_ok(), "a quiet interval: the next checkpoint, the same record");
        assert!(third.follows(&first).is_ok(), "a verifier may skip checkpoints it did not see");
        assert!(third.follows(&third).is_ok(), "the same checkpoint again");
        assert!(first.follows(&third).unwrap_err().contains("put back"));
        // A second chain forked from the first checkpoint (a log rewritten from record 10 on).
        let forked = signer.sign(Some(&first), 11, "h11", at(120));
        assert!(forked.follows(&quiet).unwrap_err().contains("differs"), "two checkpoints numbered 2");
        let forked_next = signer.sign(Some(&forked), 12, "h12", at(180));
        assert!(forked_next.follows(&quiet).unwrap_err().contains("does not follow"));
        let cut = signer.sign(Some(&third), 9, "h9", at(240));
        assert!(cut.follows(&third).unwrap_err().contains("cut back"));
    }
}
