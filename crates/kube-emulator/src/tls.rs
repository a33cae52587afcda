//! Serving the emulator as a cluster's API server is served: over TLS, with a CA that the
//! kubeconfig carries, and a bearer token. kubectl sends a token only over TLS, so an emulator that
//! asks for a token must serve TLS; other users of the machine, who cannot read the kubeconfig,
//! then have neither.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// What a kubeconfig needs to reach an emulator served with [`crate::Access::secured`], and the
/// server's side of it. Made fresh for each start; nothing of it is stored but the kubeconfig.
#[derive(Clone)]
pub struct Secured {
    /// The bearer token every request must carry (two random UUIDs: 244 random bits).
    pub token: String,
    /// The CA that signed the server's certificate, PEM: the kubeconfig's `certificate-authority-data`.
    pub ca_pem: String,
    pub(crate) server: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for Secured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secured").field("token", &"<redacted>").finish_non_exhaustive()
    }
}

impl Secured {
    /// A new CA, a certificate for 127.0.0.1, ::1 and localhost signed by it, and a new token.
    pub fn generate() -> std::io::Result<Self> {
        let invalid = std::io::Error::other;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(invalid)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        ca.distinguished_name.push(DnType::CommonName, "kube-emulator CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().map_err(invalid)?).map_err(invalid)?;
        let names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
        let mut leaf = CertificateParams::new(names).map_err(invalid)?;
        leaf.distinguished_name.push(DnType::CommonName, "kube-emulator");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(invalid)?;
        let cert = leaf.signed_by(&key, &ca).map_err(invalid)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .map_err(std::io::Error::other)?;
        // The emulator speaks HTTP/1.1 only.
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        Ok(Secured { token, ca_pem: ca.pem(), server: Arc::new(server) })
    }
}
