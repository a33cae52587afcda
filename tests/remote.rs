//! The sandbox's simulated EC2 served to an operator in another process (`sandbox
//! --external-operator`, `run --sandbox-cloud`): every answer and error crosses intact, only to a
//! caller with the token, and no secret crosses at all.

mod support;

use std::sync::Arc;

use dataroom_operator::cloud::fake::{FakeCloud, Fault};
use dataroom_operator::cloud::remote::RemoteCloud;
use dataroom_operator::cloud::{ErrorKind, Imperative, InstanceState, Lifecycle, SecretValue};
use dataroom_sandbox::remote::serve;

#[tokio::test]
async fn the_remote_cloud_answers_as_the_fake_it_forwards_to() {
    let fake = Arc::new(FakeCloud::default());
    let (addr, server) = serve(fake.clone(), "127.0.0.1:0".parse().unwrap(), "t0ken").await.unwrap();
    let remote = RemoteCloud::new(addr, "t0ken");

    let launched = support::plant(&remote, "uid-1", "default", "web").await;
    assert_eq!(launched.state, InstanceState::Pending);
    assert_eq!(remote.describe_managed().await.unwrap(), fake.instances());
    assert_eq!(remote.describe_by_owner("uid-1").await.unwrap()[0].id, launched.id);

    // Secrets stay in the operator's process: the sandbox never holds nor serves one.
    remote.put_secret("dataroom-operator/ssh/k", &SecretValue::new("private".into())).await.unwrap();
    let secret = remote.get_secret("dataroom-operator/ssh/k").await.unwrap().unwrap();
    assert_eq!(secret.expose(), "private");
    assert!(fake.secret_names().is_empty(), "a secret crossed to the sandbox");
    assert!(remote.get_secret("missing").await.unwrap().is_none());

    // Without the token nothing is answered.
    let stranger = RemoteCloud::new(addr, "guess");
    let error = stranger.describe_managed().await.unwrap_err();
    assert!(error.message.contains("HTTP 401"), "{error:?}");

    fake.inject(Some("StopInstances"), Fault::Throttle, 1);
    let error = remote.stop_instance(&launched.id).await.unwrap_err();
    assert_eq!((error.kind, error.code.as_str()), (ErrorKind::Retryable, "RequestLimitExceeded"));
    let error = remote.start_instance("i-missing", &support::reservation("x")).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound);

    server.abort();
    let error = remote.describe_managed().await.unwrap_err();
    assert_eq!((error.kind, error.code.as_str()), (ErrorKind::Retryable, "Transport"));
}
