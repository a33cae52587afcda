//! The HTTP side of the operator: `/healthz`, `/readyz` and `/metrics` (no key needed), and the
//! admin REST API under `/api` (every route needs an admin key; see `auth`).

pub mod auth;
pub mod console;
pub mod deadline;
pub mod error;
pub mod identity;
pub mod keyfile;
pub mod listing;
pub mod lookup;
pub mod openapi;
pub mod rate;
pub mod routes;
pub mod scope;
pub mod session;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, HttpServer, Responder, ResponseError, get, web};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::controller::Shared;
use crate::controller::operation::Operation;
use crate::metrics::Metrics;
use crate::ssh;
use auth::{Admin, AdminKeys};
use error::ApiError;

/// Largest JSON body the API reads.
pub const BODY_LIMIT: usize = 1024 * 1024;

pub struct HealthState {
    pub ready: Arc<AtomicBool>,
    pub metrics: Arc<Metrics>,
}

/// Input limits of the admin API.
#[derive(Clone, Debug)]
pub struct ApiLimits {
    /// Largest file an upload may carry (default 100 MiB).
    pub max_file_bytes: u64,
    /// Bytes of stdout and of stderr kept per command (default 1 MiB each).
    pub output_cap: usize,
    /// Longest command (default 16 KiB).
    pub max_command_bytes: usize,
    /// Most commands in one batch (default 50).
    pub max_batch: usize,
    /// Kept output of a whole batch after which no further command is run (default 4 MiB): one
    /// request cannot make the operator hold 50 commands' full output.
    pub max_batch_output_bytes: usize,
    /// Largest configuration `push-config` takes, inline or from S3 (default 1 MiB).
    pub max_config_bytes: u64,
    /// Most exec, file and configuration operations over SSH at once, all instances together
    /// (default 64); one more is refused with 503 `ssh_busy` and `Retry-After`.
    pub max_ssh_operations: usize,
    /// Requests per key (default 50 a second, bursts of 100); over it is 429 `rate_limited`.
    pub key_rate: rate::Rate,
    /// Requests per source address, keyed or not (default 100 a second, bursts of 200).
    pub address_rate: rate::Rate,
    /// Longest a request body may stall, no byte arriving, before it is cut off with 408
    /// (default 30 s).
    pub body_idle: std::time::Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_file_bytes: 100 << 20,
            output_cap: 1 << 20,
            max_command_bytes: 16 << 10,
            max_batch: 50,
            max_batch_output_bytes: 4 << 20,
            max_config_bytes: 1 << 20,
            max_ssh_operations: 64,
            key_rate: rate::Rate { per_second: 50, burst: 100 },
            address_rate: rate::Rate { per_second: 100, burst: 200 },
            body_idle: std::time::Duration::from_secs(30),
        }
    }
}

/// What the admin API's handlers share. It holds the controller's `Shared` parts (read-only views,
/// audit log, gate, SSH pool, the cloud's imperative port) and never the controller's `Context`:
/// no handler can name a launch, start, stop or terminate. Those go through the custom resources.
pub struct AdminState {
    pub shared: Arc<Shared>,
    /// The keys in force (replaced when the keys file changes; see `keyfile`).
    pub keys: keyfile::LiveKeys,
    /// Kubernetes tokens, checked by TokenReview and SubjectAccessReview; `None` accepts admin
    /// keys only.
    pub identities: Option<Arc<identity::Identities>>,
    /// Where objects created through the API live.
    pub namespace: String,
    /// Whether `PUT /api/ec2/budget` may change the budget (else 403 `budget_read_only`).
    pub budget_writes: bool,
    /// The controller's pool, unless a test swaps it.
    pub ssh: Arc<ssh::Pool>,
    pub limits: ApiLimits,
    /// The token buckets of `limits` (see [`AdminState::set_limits`]) and the failed logins.
    pub rates: Arc<rate::RateLimits>,
    /// How often a new AMI's state is checked until it settles (default 5 s).
    pub ami_poll: std::time::Duration,
    /// SSH operations under way (bounded by `limits.max_ssh_operations`).
    ssh_operations: Arc<AtomicUsize>,
    /// The instance list as last rendered.
    pub instance_list: Arc<listing::Rendered<routes::instances::Facets>>,
    /// The console's signed-in sessions.
    pub sessions: Arc<session::Sessions>,
}

/// One SSH operation's place among `max_ssh_operations`, given back when dropped (for a download,
/// when its stream ends).
pub struct SshWork(Arc<AtomicUsize>);

impl Drop for SshWork {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AdminState {
    pub fn new(shared: Arc<Shared>, keys: AdminKeys, namespace: &str) -> Self {
        let pool = shared.ssh.clone();
        let ami_poll = std::time::Duration::from_secs(5);
        AdminState {
            shared,
            keys: keyfile::LiveKeys::new(keys),
            identities: None,
            budget_writes: true,
            namespace: namespace.to_string(),
            ssh: pool,
            rates: Arc::new(rate::RateLimits::new(
                ApiLimits::default().key_rate,
                ApiLimits::default().address_rate,
            )),
            limits: ApiLimits::default(),
            ami_poll,
            ssh_operations: Arc::default(),
            instance_list: Arc::default(),
            sessions: Arc::default(),
        }
    }

    /// Limits other than the defaults, the rates among them.
    pub fn set_limits(&mut self, limits: ApiLimits) {
        self.rates = Arc::new(rate::RateLimits::new(limits.key_rate, limits.address_rate));
        self.limits = limits;
    }

    /// Namespaces a Kubernetes identity's reach is asked about: those of the instances and rooms
    /// the operator sees, and the API's.
    pub fn known_namespaces(&self) -> std::collections::BTreeSet<String> {
        let instances =
            self.shared.instances.state().into_iter().filter_map(|o| o.metadata.namespace.clone());
        let rooms = self.shared.rooms.state().into_iter().filter_map(|o| o.metadata.namespace.clone());
        instances.chain(rooms).chain([self.namespace.clone()]).collect()
    }

    /// Accept Kubernetes tokens too, keeping review answers for `ttl`.
    pub fn accept_kubernetes_identities(&mut self, ttl: std::time::Duration) {
        self.identities = Some(Arc::new(identity::Identities::new(self.shared.client.clone(), ttl)));
    }

    /// The keys in force now.
    pub fn keys(&self) -> Arc<AdminKeys> {
        self.keys.current()
    }

    /// A place for one more SSH operation, or 503 `ssh_busy` when all are taken.
    pub fn ssh_work(&self) -> Result<SshWork, ApiError> {
        let max = self.limits.max_ssh_operations;
        let taken = self.ssh_operations.fetch_add(1, Ordering::SeqCst);
        let work = SshWork(self.ssh_operations.clone());
        if taken >= max {
            let why = format!("{max} SSH operations are under way, the most at once; try again shortly");
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ssh_busy", why).retry_after(1));
        }
        Ok(work)
    }

    /// The audited operation `action` on `target` by `admin` (see `controller::operation`).
    pub fn operation(
        &self,
        admin: &Admin,
        action: &str,
        target: &str,
        params: serde_json::Value,
    ) -> Operation<'_> {
        self.shared.operation(&admin.actor(), action, target, params)
    }
}

/// A DNS-1123 label: what object names and data room IDs look like.
pub fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[get("/healthz")]
async fn healthz() -> impl Responder {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

#[get("/readyz")]
async fn readyz(state: web::Data<HealthState>, req: actix_web::HttpRequest) -> impl Responder {
    let why = match (is_standby(&req), state.ready.load(Ordering::SeqCst)) {
        (true, _) => "standby: another replica holds the leader lease\n",
        (false, false) => "starting: EC2 view not primed yet\n",
        (false, true) => return HttpResponse::Ok().content_type("text/plain").body("ready\n"),
    };
    HttpResponse::ServiceUnavailable().content_type("text/plain").body(why)
}

#[get("/metrics")]
async fn metrics(state: web::Data<HealthState>) -> impl Responder {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render())
}

/// Whether this replica waits for the leader lease (and serves no admin API meanwhile).
#[derive(Clone, Copy, Debug)]
pub struct Standby(pub bool);

fn is_standby(req: &actix_web::HttpRequest) -> bool {
    req.app_data::<web::Data<Standby>>().is_some_and(|s| s.0)
}

async fn no_route(req: actix_web::HttpRequest) -> HttpResponse {
    if is_standby(&req) && req.path().starts_with("/api") {
        let status = actix_web::http::StatusCode::SERVICE_UNAVAILABLE;
        let why = "this replica is a standby; the leader serves the admin API (the Service routes to it)";
        return ApiError::new(status, "not_leader", why).error_response();
    }
    if let Some(allowed) = openapi::methods(req.path()) {
        let status = actix_web::http::StatusCode::METHOD_NOT_ALLOWED;
        let why = format!("{} is not served here; the route serves {allowed}", req.method());
        let mut response = ApiError::new(status, "method_not_allowed", why).error_response();
        let allow = actix_web::http::header::HeaderValue::from_str(&allowed).expect("method names are ASCII");
        response.headers_mut().insert(actix_web::http::header::ALLOW, allow);
        return response;
    }
    let status = actix_web::http::StatusCode::NOT_FOUND;
    ApiError::new(status, "no_route", "no such route; see /api/openapi.json").error_response()
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics);
}

/// The admin API: routes, extractor error handling, the OpenAPI document and its docs page.
pub fn configure_api(cfg: &mut web::ServiceConfig) {
    error::configure_extractors(cfg, BODY_LIMIT);
    cfg.configure(routes::configure)
        .configure(console::configure)
        .service(SwaggerUi::new("/api/docs/{_:.*}").url("/api/openapi.json", openapi::ApiDoc::openapi()));
}

/// How the HTTP listener is exposed.
#[derive(Default)]
pub struct Listener {
    /// Serve HTTPS with this configuration instead of plain HTTP.
    pub tls: Option<rustls::ServerConfig>,
    /// Browser origins allowed to call `/api` (CORS); none by default, so browsers refuse
    /// cross-origin calls.
    pub cors_origins: Vec<String>,
    /// Serve only health and metrics, and answer `/api` with 503 `not_leader`.
    pub standby: bool,
}

fn cors(origins: &[String]) -> actix_cors::Cors {
    let cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "DELETE"])
        .allowed_headers([actix_web::http::header::AUTHORIZATION, actix_web::http::header::CONTENT_TYPE])
        .max_age(600);
    origins.iter().fold(cors, |cors, origin| cors.allowed_origin(origin))
}

/// Binds `addr` and returns the running server (await it, or spawn it) and the bound address.
/// Without `api`, only the health and metrics endpoints are served.
pub fn serve(
    addr: SocketAddr,
    health: HealthState,
    api: Option<AdminState>,
    listener: Listener,
) -> std::io::Result<(actix_web::dev::Server, SocketAddr)> {
    let health = web::Data::new(health);
    let api = api.map(web::Data::new);
    if let Some(api) = api.clone() {
        // Failed logins reach the audit log in aggregate, one record per source an interval.
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(rate::FAILURE_INTERVAL);
            tick.tick().await;
            loop {
                tick.tick().await;
                api.rates.flush(&api.shared).await;
            }
        });
    }
    let origins = listener.cors_origins;
    let standby = web::Data::new(Standby(listener.standby));
    let server = HttpServer::new(move || {
        let app = App::new()
            .wrap(actix_web::middleware::from_fn(deadline::body_deadline))
            .wrap(actix_web::middleware::Condition::new(!origins.is_empty(), cors(&origins)))
            .app_data(health.clone())
            .app_data(standby.clone())
            .configure(configure)
            .default_service(web::to(no_route));
        match &api {
            Some(api) => app.app_data(api.clone()).configure(configure_api),
            None => app,
        }
    })
    .workers(2)
    .disable_signals();
    let server = match listener.tls {
        Some(tls) => server.bind_rustls_0_23(addr, tls)?,
        None => server.bind(addr)?,
    };
    let bound = server.addrs()[0];
    Ok((server.run(), bound))
}
