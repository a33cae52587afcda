//! Key custody: one ed25519 key pair per instance. The private key is generated here, written to
//! Secrets Manager first, and only then is the public half imported into EC2, so a crash between
//! the two steps leaves a secret that the next attempt reuses, never a key pair nobody can use.

use ssh_key::{Algorithm, LineEnding, PrivateKey, rand_core::OsRng};

use super::{CloudError, ErrorKind, Imperative, KeyPair, Result, SecretValue, ssh_secret_name};

/// Makes sure key pair `name` exists in EC2 with its private key in Secrets Manager.
/// Returns the key pair and the name of the secret (never its value).
pub async fn ensure_key_pair(cloud: &dyn Imperative, name: &str) -> Result<(KeyPair, String)> {
    let secret_name = ssh_secret_name(name);
    let existing = cloud.describe_key_pairs(&[name.to_string()]).await?;
    let stored = cloud.get_secret(&secret_name).await?;
    if let (Some(pair), Some(_)) = (existing.into_iter().next(), &stored) {
        return Ok((pair, secret_name));
    }
    let private = match stored {
        Some(secret) => parse_private(secret.expose())?,
        None => {
            let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
                .map_err(|e| internal(format!("key generation failed: {e}")))?;
            let pem =
                key.to_openssh(LineEnding::LF).map_err(|e| internal(format!("key encoding failed: {e}")))?;
            cloud.put_secret(&secret_name, &SecretValue::new(pem.to_string())).await?;
            key
        }
    };
    let public = private
        .public_key()
        .to_openssh()
        .map_err(|e| internal(format!("public key encoding failed: {e}")))?;
    // A key pair that exists without its secret cannot be used by anyone: replace it.
    cloud.delete_key_pair(name).await?;
    let pair = cloud.import_key_pair(name, &public).await?;
    Ok((pair, secret_name))
}

/// Deletes the key pair and its secret; both may already be gone.
pub async fn delete_key_pair(cloud: &dyn Imperative, name: &str) -> Result<()> {
    cloud.delete_key_pair(name).await?;
    cloud.delete_secret(&ssh_secret_name(name)).await
}

/// Parses an OpenSSH private key read from the secret store.
pub fn parse_private(pem: &str) -> Result<PrivateKey> {
    PrivateKey::from_openssh(pem)
        .map_err(|_| internal("the stored SSH key is not an OpenSSH private key".into()))
}

fn internal(message: String) -> CloudError {
    CloudError::new(ErrorKind::Terminal, "KeyMaterial", message)
}
