//! The sandbox's simulated EC2 served to an operator in another process (`sandbox
//! --external-operator`, answered to `run --sandbox-cloud`'s `RemoteCloud`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use dataroom_operator::cloud::fake::FakeCloud;
use dataroom_operator::cloud::remote::{AUTHORIZATION, Call, transport};
use dataroom_operator::cloud::{CloudError, Imperative, Lifecycle, Result};
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use serde_json::Value;
use subtle::ConstantTimeEq;

/// Answers `call` as the simulated EC2 does (launches and starts take no reservation: the
/// operator on the other side took it before it called): the result as JSON, or the cloud's error.
async fn answer(cloud: &FakeCloud, call: Call) -> Result<Value> {
    fn json<T: Serialize>(value: T) -> Result<Value> {
        serde_json::to_value(value).map_err(|e| transport(e.to_string()))
    }
    match call {
        Call::RunInstance { req } => json(cloud.run_instances(&req).await?),
        Call::DescribeManaged => json(cloud.describe_managed().await?),
        Call::DescribeByOwner { owner_uid } => json(cloud.describe_by_owner(&owner_uid).await?),
        Call::StartInstance { id } => json(cloud.start_instances(&id).await?),
        Call::StopInstance { id } => json(cloud.stop_instance(&id).await?),
        Call::TerminateInstance { id } => json(cloud.terminate_instance(&id).await?),
        Call::RetainInstance { id } => json(cloud.retain_instance(&id).await?),
        Call::ModifyInstance { id, change } => json(cloud.modify(&id, &change).await?),
        Call::GrowRootVolume { id, gib } => json(cloud.grow_volume(&id, gib).await?),
        Call::DescribeSecurityGroups { ids } => json(cloud.describe_security_groups(&ids).await?),
        Call::EnsureSecurityGroup { group } => json(cloud.ensure_security_group(&group).await?),
        Call::ConsoleOutput { id } => json(cloud.console_output(&id).await?),
        Call::CreateImage { instance_id, name } => json(cloud.create_image(&instance_id, &name).await?),
        Call::DescribeImages { ids } => json(cloud.describe_images(&ids).await?),
        Call::DeregisterImage { id } => json(cloud.deregister_image(&id).await?),
        Call::ImportKeyPair { name, public_key } => json(cloud.import_key_pair(&name, &public_key).await?),
        Call::DescribeKeyPairs { names } => json(cloud.describe_key_pairs(&names).await?),
        Call::DeleteKeyPair { name } => json(cloud.delete_key_pair(&name).await?),
        Call::GetObject { bucket, key, max_bytes } => json(cloud.get_object(&bucket, &key, max_bytes).await?),
    }
}

/// The largest call accepted (a launch request with its user data is the largest).
const MAX_CALL_BYTES: usize = 256 * 1024;

/// Serves `cloud` on `addr` (loopback) to callers that present `token`, until the task is
/// aborted; returns the bound address.
pub async fn serve(
    cloud: Arc<FakeCloud>,
    addr: SocketAddr,
    token: &str,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let expected = Arc::new(format!("Bearer {token}"));
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (cloud, expected) = (cloud.clone(), expected.clone());
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (cloud, expected) = (cloud.clone(), expected.clone());
                async move {
                    let presented = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
                    if !presented.is_some_and(|p| bool::from(p.ct_eq(expected.as_bytes()))) {
                        let refused = hyper::Response::builder().status(401).body(Full::new(Bytes::new()));
                        return Ok::<_, Infallible>(refused.expect("a valid response"));
                    }
                    let body = http_body_util::Limited::new(req.into_body(), MAX_CALL_BYTES);
                    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let reply: std::result::Result<Value, CloudError> = match serde_json::from_slice(&body) {
                        Ok(call) => answer(cloud.as_ref(), call).await,
                        Err(e) => Err(transport(format!("not a cloud call: {e}"))),
                    };
                    let bytes = serde_json::to_vec(&reply).expect("replies serialise");
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(bytes))))
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
        }
    });
    Ok((bound, task))
}
