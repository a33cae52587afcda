//! The HTTP side of the operator. For now: `/healthz`, `/readyz` and `/metrics` (no key needed);
//! the admin REST API joins here under `/api`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::{App, HttpResponse, HttpServer, Responder, get, web};

use crate::metrics::Metrics;

pub struct HealthState {
    pub ready: Arc<AtomicBool>,
    pub metrics: Arc<Metrics>,
}

#[get("/healthz")]
async fn healthz() -> impl Responder {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

#[get("/readyz")]
async fn readyz(state: web::Data<HealthState>) -> impl Responder {
    if state.ready.load(Ordering::SeqCst) {
        HttpResponse::Ok().content_type("text/plain").body("ready\n")
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("starting: EC2 view not primed yet\n")
    }
}

#[get("/metrics")]
async fn metrics(state: web::Data<HealthState>) -> impl Responder {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics);
}

/// Binds `addr` and returns the running server (await it, or spawn it) and the bound address.
pub fn serve(addr: SocketAddr, state: HealthState) -> std::io::Result<(actix_web::dev::Server, SocketAddr)> {
    let state = web::Data::new(state);
    let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(configure))
        .workers(1)
        .disable_signals()
        .bind(addr)?;
    let bound = server.addrs()[0];
    Ok((server.run(), bound))
}
