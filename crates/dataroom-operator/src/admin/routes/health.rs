//! `GET /api/ec2/instances/{id}/health`: an HTTP check of the instance's application server, with
//! a timeout. Reads only; not audited.

use std::time::{Duration, Instant};

use actix_web::{get, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::admin::AdminState;
use crate::admin::error::{ApiError, Problem};
use crate::admin::lookup;
use crate::admin::routes::instances::InstanceView;
use crate::admin::scope::{Authorized, needs};
use crate::probe;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HealthQuery {
    /// Port of the application server (default 8000).
    pub port: Option<u16>,
    /// Path to GET (default `/health`).
    pub path: Option<String>,
    /// Seconds to wait (1–60, default 5).
    #[param(minimum = 1, maximum = 60)]
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthResult {
    /// True on a 2xx answer within the timeout.
    pub healthy: bool,
    pub url: String,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    /// The answer's body when it is JSON (at most 64 KiB read).
    #[schema(value_type = Option<Object>)]
    pub body: Option<serde_json::Value>,
    /// Why there was no answer.
    pub error: Option<String>,
}

#[utoipa::path(
    params(("id" = String, Path, description = "EC2 instance ID or object name"), HealthQuery),
    responses((status = 200, description = "checked (see `healthy`)", body = HealthResult),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem),
              (status = 409, description = "the instance is not running", body = Problem)),
    security(("admin_key" = ["read"])),
    tag = "instances"
)]
#[get("/api/ec2/instances/{id}/health")]
pub async fn health(
    admin: Authorized<needs::Read>,
    state: web::Data<AdminState>,
    id: web::Path<String>,
    query: web::Query<HealthQuery>,
) -> Result<web::Json<HealthResult>, ApiError> {
    let path = query.path.clone().unwrap_or_else(|| "/health".into());
    if !path.starts_with('/') || path.len() > 1024 || path.chars().any(|c| c.is_control() || c == ' ') {
        return Err(ApiError::bad_request(
            "invalid_path",
            "path starts with / and has no spaces or control characters",
        ));
    }
    let timeout = match query.timeout_seconds.unwrap_or(5) {
        s @ 1..=60 => Duration::from_secs(s),
        _ => return Err(ApiError::bad_request("invalid_timeout", "timeout_seconds is 1 to 60")),
    };
    let view = InstanceView::of(&state, &*lookup::instance(&state, &admin, &id)?);
    let ip = view.private_ip.or(view.public_ip).filter(|_| view.status == "running");
    let ip = ip.ok_or_else(|| {
        ApiError::conflict("instance_not_running", format!("instance {id} is {}", view.status))
    })?;
    let address = format!("{ip}:{}", query.port.unwrap_or(8000));
    let started = Instant::now();
    let answer = probe::get(&address, &path, false, timeout).await;
    let latency_ms = started.elapsed().as_millis() as u64;
    let url = format!("http://{address}{path}");
    let result = match answer {
        Ok((status, body)) => HealthResult {
            healthy: (200..300).contains(&status),
            url,
            status_code: Some(status),
            latency_ms,
            body: serde_json::from_slice(&body).ok(),
            error: None,
        },
        Err(why) => {
            HealthResult { healthy: false, url, status_code: None, latency_ms, body: None, error: Some(why) }
        }
    };
    Ok(web::Json(result))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(health);
}
