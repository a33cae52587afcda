//! Transport: the emulator over HTTP/1.1 on a TCP listener, or in-process as the tower service
//! behind a `kube::Client`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Body, Frame};
use hyper::{Request, Response};

use super::{ApiRequest, ApiServer, Reply};

type ReplyBody = UnsyncBoxBody<Bytes, Infallible>;

async fn respond<B>(server: Arc<ApiServer>, req: Request<B>) -> Response<ReplyBody>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let (parts, body) = req.into_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let query: HashMap<String, String> = parts.uri.query().map(url_decode_pairs).unwrap_or_default();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let request = ApiRequest {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query,
        accept: header("accept"),
        content_type: header("content-type"),
        body,
    };
    match server.handle(request).await {
        Reply::Json(code, value) => {
            let bytes = serde_json::to_vec(&value).expect("replies serialise");
            Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(bytes)).boxed_unsync())
                .expect("a valid response")
        }
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

/// An in-process client: requests go straight to the handlers.
pub fn client(server: Arc<ApiServer>) -> kube::Client {
    let service = tower::service_fn(move |req: Request<kube::client::Body>| {
        let server = server.clone();
        async move { Ok::<_, Infallible>(respond(server, req).await) }
    });
    kube::Client::new(service, "default")
}

/// Serves the emulator on `addr` until the returned task is aborted; returns the bound address.
pub async fn serve(
    server: Arc<ApiServer>,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let server = server.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(respond(server, req).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    Ok((bound, task))
}
