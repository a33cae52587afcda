//! What authorisation costs: one GET of an instance from the controller's view, under `wrk`, with
//! an admin key holding every scope, with a key scoped to `read` in one namespace, and with a
//! Kubernetes ServiceAccount token (TokenReview and SubjectAccessReview answers kept 10 s, so the
//! run asks the API server once), each beside `/healthz` (the HTTP floor) in the same run.
//!
//! Run with `cargo bench --bench auth` (needs wrk; `make test` installs it).

#[allow(unused_imports)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use dataroom_operator::admin::auth::AdminKeys;
use dataroom_operator::admin::{self, HealthState};
use dataroom_operator::metrics::Metrics;
use serde_json::json;
use support::admin::{KEY, unlimited};
use support::harness::Harness;
use support::wrk::wrk;

const SCOPED: &str = "drk_bench-scoped-key";

#[tokio::main]
async fn main() {
    let h = Harness::start().await;
    h.create("web", json!({})).await;
    h.state("web", "running").await;
    dataroom_sandbox::install_user_roles(&h.client).await.unwrap();
    let token = support::identity::bound_token(&h.client, "default", "bench", "dataroom-viewer").await;

    let lines = format!(
        "{}{} scopes=read namespaces=default\n",
        AdminKeys::line("tester", KEY),
        AdminKeys::line("scoped", SCOPED).trim_end()
    );
    let mut api = admin::AdminState::new(h.ctx.shared(), AdminKeys::parse(&lines).unwrap(), "default");
    // Measured here is authorisation, not the rate limits.
    api.set_limits(unlimited());
    api.accept_kubernetes_identities(Duration::from_secs(10));
    let health =
        HealthState { ready: Arc::new(AtomicBool::new(true)), metrics: Arc::new(Metrics::default()) };
    let (server, addr) =
        admin::serve("127.0.0.1:0".parse().unwrap(), health, Some(api), Default::default()).unwrap();
    tokio::spawn(server);

    let base = format!("http://{addr}");
    let run = |path: &'static str, bearer: String| {
        let url = format!("{base}{path}");
        tokio::task::spawn_blocking(move || wrk(&url, &bearer))
    };
    let (floor, _) = run("/healthz", String::new()).await.unwrap();
    let (all, all_p99) = run("/api/ec2/instances/web", KEY.into()).await.unwrap();
    let (scoped, scoped_p99) = run("/api/ec2/instances/web", SCOPED.into()).await.unwrap();
    let asked_before = h.server.requests();
    let (kubernetes, kubernetes_p99) = run("/api/ec2/instances/web", token).await.unwrap();
    let asked = h.server.requests() - asked_before;
    println!(
        "GET /api/ec2/instances/web (wrk -t2 -c16 10 s each) | /healthz {floor:.0} req/s | \
         admin key (all scopes) {all:.0} req/s, p99 {all_p99:.2} ms, {:.3}x | \
         scoped key (read, one namespace) {scoped:.0} req/s, p99 {scoped_p99:.2} ms, {:.3}x | \
         Kubernetes token (reviews kept 10 s) {kubernetes:.0} req/s, p99 {kubernetes_p99:.2} ms, {:.3}x | \
         API server requests during the token run: {asked} (reviews as the kept answers fill and expire, and the controller's own)",
        all / floor,
        scoped / floor,
        kubernetes / floor
    );
}
