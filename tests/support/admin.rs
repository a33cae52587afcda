//! The admin API in-process: its state over a harness, the app, and a call helper.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::{App, test, web};
use dataroom_operator::admin::auth::AdminKeys;
use dataroom_operator::admin::{self, AdminState, HealthState};
use dataroom_operator::metrics::Metrics;
use serde_json::Value;

use super::harness::Harness;

pub const KEY: &str = "drk_test-key-0123456789";

/// The admin state over the harness's controller, accepting `KEY` as `tester`.
pub fn state(h: &Harness) -> AdminState {
    let keys = AdminKeys::parse(&AdminKeys::line("tester", KEY)).unwrap();
    let mut state = AdminState::new(h.ctx.shared(), keys, "default");
    // Tests poll and race the API far faster than a person would; the rate limits have tests of their own.
    state.set_limits(unlimited());
    state
}

/// The default limits without rate limits.
pub fn unlimited() -> admin::ApiLimits {
    let unlimited = admin::rate::Rate { per_second: 1_000_000, burst: 1_000_000 };
    admin::ApiLimits { key_rate: unlimited, address_rate: unlimited, ..Default::default() }
}

/// The whole HTTP app (health endpoints and admin API) as an in-process service.
pub async fn app(
    api: AdminState,
) -> impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error> {
    let health =
        HealthState { ready: Arc::new(AtomicBool::new(true)), metrics: Arc::new(Metrics::default()) };
    test::init_service(
        App::new()
            .wrap(actix_web::middleware::from_fn(admin::deadline::body_deadline))
            .app_data(web::Data::new(health))
            .app_data(web::Data::new(api))
            .configure(admin::configure)
            .configure(admin::configure_api),
    )
    .await
}

/// Sends a request with the admin key: (status, JSON body or Null).
pub async fn call<S>(app: &S, method: &str, uri: &str, body: Option<Value>) -> (u16, Value)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    call_as(app, method, uri, KEY, body).await
}

/// Sends a request with `key`: (status, JSON body or Null).
pub async fn call_as<S>(app: &S, method: &str, uri: &str, key: &str, body: Option<Value>) -> (u16, Value)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let mut req = test::TestRequest::default()
        .method(method.parse().unwrap())
        .uri(uri)
        .insert_header(("Authorization", format!("Bearer {key}")));
    if let Some(body) = body {
        req = req.set_json(body);
    }
    let response = test::call_service(app, req.to_request()).await;
    let status = response.status().as_u16();
    let bytes = test::read_body(response).await;
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}
