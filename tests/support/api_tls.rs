//! Raw HTTP requests to the sandbox's API emulator over TLS, trusting only the CA its kubeconfig
//! carries: for attacks that send what kubectl never would.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// What the kubeconfig holds: the emulator's address, its CA (PEM) and the token.
pub struct ApiAccess {
    pub server: String,
    pub address: String,
    pub ca_pem: String,
    pub token: String,
}

impl ApiAccess {
    pub fn from_kubeconfig(path: &Path) -> Self {
        use base64::Engine as _;
        let config: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let cluster = &config["clusters"][0]["cluster"];
        let server = cluster["server"].as_str().unwrap().to_string();
        let ca = cluster["certificate-authority-data"].as_str().unwrap_or_default();
        let ca_pem =
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(ca).unwrap()).unwrap();
        let token = config["users"][0]["user"]["token"].as_str().unwrap_or_default().to_string();
        let address = server.trim_start_matches("https://").trim_start_matches("http://").to_string();
        ApiAccess { server, address, ca_pem, token }
    }

    /// One HTTP/1.0 request over TLS (headers end in CRLF each): the status code and the reply.
    pub fn request(&self, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
        let request = format!("{method} {path} HTTP/1.0\r\nHost: {}\r\n{headers}\r\n{body}", self.address);
        let reply = self.raw(&request);
        let status = reply.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, reply)
    }

    /// The bearer token's header line.
    pub fn bearer(&self) -> String {
        format!("Authorization: Bearer {}\r\n", self.token)
    }

    pub fn raw(&self, request: &str) -> String {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let host = self.address.rsplit_once(':').unwrap().0.to_string();
        let name = ServerName::try_from(host).unwrap();
        let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let socket = std::net::TcpStream::connect(&self.address).unwrap();
        let mut tls = rustls::StreamOwned::new(connection, socket);
        tls.write_all(request.as_bytes()).unwrap();
        let mut reply = Vec::new();
        // A server that closes without close_notify ends the read with an error; what came is the reply.
        let _ = tls.read_to_end(&mut reply);
        String::from_utf8_lossy(&reply).into_owned()
    }
}
