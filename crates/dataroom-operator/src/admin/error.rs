//! One error type for the admin API, rendered as RFC 7807 `application/problem+json` with a stable
//! machine-readable `code`. Handlers never return a bare 500: an unexpected failure is a 502 (the
//! cloud or Kubernetes API failed) or a 503, with what to do in `detail`.

use crate::controller::reach::ReachError;
use crate::ssh::{SshError, TransferError};
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
    /// Seconds after which a retry may succeed (`Retry-After`), for a refusal that is temporary.
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError { status, code, detail: detail.into(), limit: None, retry_after: None }
    }

    pub fn retry_after(self, seconds: u32) -> Self {
        Self { retry_after: Some(seconds), ..self }
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
        if let Some(seconds) = self.retry_after {
            response.insert_header(("Retry-After", seconds.to_string()));
        }
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

/// Admin API failures are audited as refused when the caller asked for something not allowed
/// (4xx) and as failures otherwise.
impl crate::controller::operation::Failed for ApiError {
    fn outcome(&self) -> crate::audit::Outcome {
        match self.status.is_client_error() {
            true => crate::audit::Outcome::Refused,
            false => crate::audit::Outcome::Failure,
        }
    }

    fn unrecorded(e: crate::audit::AuditError) -> Self {
        let why = format!("{e}; the operation was carried out, but its outcome is not in the audit log");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable", why)
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
        if let Some(stalled) = super::deadline::stalled(&e) {
            return stalled.into();
        }
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

impl From<SshError> for ApiError {
    fn from(e: SshError) -> Self {
        use actix_web::http::StatusCode as S;
        let (status, code) = match &e {
            SshError::HostKeyChanged { .. } => (S::CONFLICT, "host_key_changed"),
            SshError::Unreachable { .. } => (S::GATEWAY_TIMEOUT, "ssh_unreachable"),
            SshError::AuthRejected => (S::BAD_GATEWAY, "ssh_auth_rejected"),
            SshError::NoKey(_) => (S::CONFLICT, "no_ssh_key"),
            SshError::Cloud(c) => return c.into(),
            SshError::Protocol(_) => (S::BAD_GATEWAY, "ssh_failed"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<ReachError> for ApiError {
    fn from(e: ReachError) -> Self {
        match e {
            ReachError::NotRunning(..) => ApiError::conflict("instance_not_running", e.to_string()),
            ReachError::NoKey(_) => ApiError::conflict("no_ssh_key", e.to_string()),
            ReachError::Ssh(e) => e.into(),
            ReachError::Audit(e) => e.into(),
        }
    }
}

impl From<TransferError> for ApiError {
    fn from(e: TransferError) -> Self {
        use actix_web::http::StatusCode as S;
        if let TransferError::Body(why) = &e
            && let Some(stalled) = super::deadline::stalled(why)
        {
            return stalled;
        }
        let e = match e {
            TransferError::Ssh(inner) => return inner.into(),
            e => e,
        };
        let (status, code) = match &e {
            TransferError::TooLarge(_) => (S::PAYLOAD_TOO_LARGE, "file_too_large"),
            TransferError::Body(_) => (S::BAD_REQUEST, "invalid_body"),
            TransferError::NotFound(_) => (S::NOT_FOUND, "not_found"),
            TransferError::NotAFile(_) => (S::BAD_REQUEST, "not_a_file"),
            TransferError::Sftp(_) => (S::BAD_GATEWAY, "sftp_failed"),
            TransferError::Ssh(_) => (S::BAD_GATEWAY, "ssh_failed"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// A malformed `multipart/form-data` body.
pub fn multipart_error(e: actix_multipart::MultipartError) -> ApiError {
    if let Some(stalled) = super::deadline::stalled(&e) {
        return stalled;
    }
    ApiError::bad_request("invalid_body", format!("expected multipart/form-data: {e}"))
}
