//! One error type for the admin API, rendered as RFC 7807 `application/problem+json` with a stable
//! machine-readable `code`. Handlers never return a bare 500: an unexpected failure is a 502 (the
//! cloud or Kubernetes API failed) or a 503, with what to do in `detail`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

/// An RFC 7807 problem document.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:dataroom:problem:<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable error code.
    pub code: String,
    /// The budget limit that refused the request (`Ec2Budget.spec` field name), when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub limit: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError { status, code, detail: detail.into(), limit: None }
    }

    pub fn unauthorized(detail: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} does not exist"))
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    /// The budget said no: 403 naming the limit.
    pub fn budget(refusal: &crate::budget::Refusal) -> Self {
        let mut e = Self::new(StatusCode::FORBIDDEN, "budget_exceeded", refusal.to_string());
        e.limit = Some(refusal.limit());
        e
    }

    /// A dependency (Kubernetes API, EC2, Secrets Manager, the audit log) failed.
    pub fn upstream(what: &str, error: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "upstream_failed", format!("{what}: {error}"))
    }

    pub fn problem(&self) -> Problem {
        Problem {
            type_: format!("urn:dataroom:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_string(),
            limit: self.limit.map(str::to_string),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.content_type("application/problem+json");
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        response.json(self.problem())
    }
}

impl From<crate::audit::AuditError> for ApiError {
    fn from(e: crate::audit::AuditError) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable", format!("{e}; nothing was done"))
    }
}

/// Kubernetes API errors: its 4xx answers are the caller's problem, the rest are upstream.
impl From<kube::Error> for ApiError {
    fn from(e: kube::Error) -> Self {
        match &e {
            kube::Error::Api(s) if s.code == 404 => {
                Self::new(StatusCode::NOT_FOUND, "not_found", s.message.clone())
            }
            kube::Error::Api(s) if s.code == 409 => Self::conflict("conflict", s.message.clone()),
            kube::Error::Api(s) if s.code == 422 || s.code == 400 => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", s.message.clone())
            }
            _ => Self::upstream("the Kubernetes API", e),
        }
    }
}

impl From<crate::cloud::CloudError> for ApiError {
    fn from(e: crate::cloud::CloudError) -> Self {
        Self::from(&e)
    }
}

impl From<&crate::cloud::CloudError> for ApiError {
    fn from(e: &crate::cloud::CloudError) -> Self {
        use crate::cloud::ErrorKind;
        match e.kind {
            ErrorKind::NotFound => Self::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            ErrorKind::Terminal => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "cloud_refused", e.to_string())
            }
            ErrorKind::Retryable => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "cloud_unavailable", e.to_string())
            }
        }
    }
}

/// Malformed JSON bodies, paths and queries become 400 problems rather than actix's plain text.
pub fn configure_extractors(cfg: &mut actix_web::web::ServiceConfig, body_limit: usize) {
    use actix_web::web;
    cfg.app_data(web::JsonConfig::default().limit(body_limit).error_handler(|e, _| {
        let status = match &e {
            actix_web::error::JsonPayloadError::Overflow { .. }
            | actix_web::error::JsonPayloadError::OverflowKnownLength { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            actix_web::error::JsonPayloadError::ContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        let code = if status == StatusCode::BAD_REQUEST { "invalid_body" } else { "body_rejected" };
        ApiError::new(status, code, e.to_string()).into()
    }))
    .app_data(
        web::QueryConfig::default()
            .error_handler(|e, _| ApiError::bad_request("invalid_query", e.to_string()).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|e, _| ApiError::bad_request("invalid_path", e.to_string()).into()),
    );
}
