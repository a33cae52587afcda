//! Transport: the emulator over HTTP/1.1 on a TCP listener, or in-process as the tower service
//! behind a `kube::Client`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
use hyper::{Request, Response};

use super::{ApiRequest, ApiServer, Reply};

type ReplyBody = UnsyncBoxBody<Bytes, Infallible>;

/// Who may use the emulator over TCP, and how much one request may carry. The checks guard a
/// server on a developer's machine from everyone else on it and from web pages in its browser:
/// a bearer token (what a kubeconfig carries), a `Host` that is an address or `localhost` (no DNS
/// rebinding), JSON, YAML or Kubernetes protobuf bodies only (no cross-site form posts) and a
/// bounded body.
#[derive(Clone, Debug)]
pub struct Access {
    /// The bearer token every request must carry; `None` asks for none.
    pub token: Option<String>,
    /// The largest request body accepted (kube-apiserver's own limit is 3 MiB).
    pub max_body_bytes: usize,
    /// Serve TLS with this configuration; `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for Access {
    fn default() -> Self {
        Access { token: None, max_body_bytes: 3 * 1024 * 1024, tls: None }
    }
}

impl Access {
    /// Requests must carry `Authorization: Bearer <token>`.
    pub fn with_token(token: impl Into<String>) -> Self {
        Access { token: Some(token.into()), ..Access::default() }
    }

    /// TLS with `secured`'s certificate, and its token required: what a kubeconfig made from it reaches.
    pub fn secured(secured: &super::Secured) -> Self {
        Access { tls: Some(secured.server.clone()), ..Access::with_token(secured.token.clone()) }
    }

    /// Why a request is refused before its body is read, if it is: status code, reason, message.
    fn refuse(&self, parts: &http::request::Parts) -> Option<(u16, &'static str, String)> {
        let header = |name: http::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
        if !header(http::header::HOST).is_some_and(names_this_machine) {
            let why = "the Host header must be an IP address or localhost";
            return Some((403, "Forbidden", why.into()));
        }
        if let Some(token) = &self.token {
            let given = header(http::header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer "));
            if !given.is_some_and(|given| same(given.as_bytes(), token.as_bytes())) {
                return Some((401, "Unauthorized", "a valid bearer token is required".into()));
            }
        }
        let announced = header(http::header::CONTENT_LENGTH).and_then(|n| n.parse::<usize>().ok());
        if announced.is_some_and(|n| n > self.max_body_bytes) {
            let why = format!("the request body is over {} bytes", self.max_body_bytes);
            return Some((413, "RequestEntityTooLarge", why));
        }
        let has_body = matches!(parts.method, http::Method::POST | http::Method::PUT | http::Method::PATCH);
        if has_body && !header(http::header::CONTENT_TYPE).is_some_and(accepted_media_type) {
            let why = "the body must be JSON, YAML or Kubernetes protobuf (application/json, a patch type, application/yaml)";
            return Some((415, "UnsupportedMediaType", why.into()));
        }
        None
    }
}

/// An IP literal or `localhost`, with or without a port: a name a web page could have resolved
/// to this machine is refused.
fn names_this_machine(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

fn accepted_media_type(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    [
        "application/json",
        "application/yaml",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/json-patch+json",
        "application/apply-patch+yaml",
        super::protobuf::MEDIA_TYPE,
    ]
    .contains(&media.as_str())
}

/// Compares in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn status_reply(code: u16, reason: &str, message: String) -> Response<ReplyBody> {
    json_reply(code, &super::status_body(code, reason, message, None))
}

fn json_reply(code: u16, value: &serde_json::Value) -> Response<ReplyBody> {
    let bytes = serde_json::to_vec(value).expect("replies serialise");
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)).boxed_unsync())
        .expect("a valid response")
}

/// A request over TCP: checked, its body read up to the limit, then answered.
async fn respond_guarded(
    server: Arc<ApiServer>,
    access: &Access,
    req: Request<hyper::body::Incoming>,
) -> Response<ReplyBody> {
    let (parts, body) = req.into_parts();
    if let Some((code, reason, message)) = access.refuse(&parts) {
        return status_reply(code, reason, message);
    }
    let body = match http_body_util::Limited::new(body, access.max_body_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let why = format!("the request body is over {} bytes", access.max_body_bytes);
            return status_reply(413, "RequestEntityTooLarge", why);
        }
        Err(e) => return status_reply(400, "BadRequest", format!("reading the body: {e}")),
    };
    respond(server, parts, body).await
}

async fn respond(server: Arc<ApiServer>, parts: http::request::Parts, body: Bytes) -> Response<ReplyBody> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mut content_type = header("content-type");
    let mut body = body;
    if content_type.starts_with(super::protobuf::MEDIA_TYPE) {
        match super::protobuf::to_json(&body) {
            Ok(json) => {
                body = Bytes::from(serde_json::to_vec(&json).expect("JSON serialises"));
                content_type = "application/json".into();
            }
            Err(why) => return status_reply(415, "UnsupportedMediaType", why),
        }
    }
    let query: HashMap<String, String> = parts.uri.query().map(url_decode_pairs).unwrap_or_default();
    let request = ApiRequest {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query,
        accept: header("accept"),
        content_type,
        body,
        impersonate_user: parts
            .headers
            .get("impersonate-user")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
        impersonate_groups: parts
            .headers
            .get_all("impersonate-group")
            .iter()
            .filter_map(|v| v.to_str().ok().map(String::from))
            .collect(),
    };
    match server.handle(request).await {
        Reply::Json(code, value) => json_reply(code, &value),
        Reply::Stream(stream) => {
            let frames = stream.map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)));
            Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .header("transfer-encoding", "chunked")
                .body(StreamBody::new(frames).boxed_unsync())
                .expect("a valid response")
        }
    }
}

fn url_decode_pairs(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An in-process client: requests go straight to the handlers (no transport, so no checks).
pub fn client(server: Arc<ApiServer>) -> kube::Client {
    let service = tower::service_fn(move |req: Request<kube::client::Body>| {
        let server = server.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            Ok::<_, Infallible>(respond(server, parts, body).await)
        }
    });
    kube::Client::new(service, "default")
}

/// Serves the emulator on `addr` to whoever `access` admits, until the returned task is
/// aborted; returns the bound address.
pub async fn serve(
    server: Arc<ApiServer>,
    addr: SocketAddr,
    access: Access,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let access = Arc::new(access);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (server, access) = (server.clone(), access.clone());
            tokio::spawn(async move {
                match access.tls.clone() {
                    Some(tls) => {
                        // A handshake that fails (plain HTTP, an unknown CA) ends the connection.
                        let Ok(stream) = tokio_rustls::TlsAcceptor::from(tls).accept(stream).await else {
                            return;
                        };
                        serve_connection(stream, server, access).await
                    }
                    None => serve_connection(stream, server, access).await,
                }
            });
        }
    });
    Ok((bound, task))
}

async fn serve_connection<IO>(io: IO, server: Arc<ApiServer>, access: Arc<Access>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let (server, access) = (server.clone(), access.clone());
        async move { Ok::<_, Infallible>(respond_guarded(server, &access, req).await) }
    });
    let io = hyper_util::rt::TokioIo::new(io);
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_and_localhost_name_this_machine() {
        for host in ["127.0.0.1:6443", "localhost:80", "LOCALHOST", "[::1]:6443", "10.0.0.1"] {
            assert!(names_this_machine(host), "{host}");
        }
        for host in ["attacker.example", "attacker.example:6443", "localhost.attacker.example:1", ""] {
            assert!(!names_this_machine(host), "{host}");
        }
    }

    #[test]
    fn bodies_are_json_or_yaml_only() {
        for ok in ["application/json", "application/json; charset=utf-8", "application/apply-patch+yaml"] {
            assert!(accepted_media_type(ok), "{ok}");
        }
        for refused in
            ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""]
        {
            assert!(!accepted_media_type(refused), "{refused}");
        }
    }
}
