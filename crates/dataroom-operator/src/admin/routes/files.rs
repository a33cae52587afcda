//! File transfer and configuration push over SFTP. Paths must be absolute and normalised, with no
//! NUL; no shell is used. Every write lands whole or not at all (a temporary file renamed into
//! place), and is audited with its size and SHA-256, never its contents.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use crate::admin::AdminState;
use crate::admin::error::{ApiError, Problem};
use crate::admin::lookup::{connect, instance_target};
use crate::admin::scope::{Authorized, needs};
use crate::crd::audit_target as target;

/// Where `push-config` writes when no path is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/dataroom/config.json";

/// An absolute, normalised remote path (see `ssh::check_path`).
pub fn remote_path(path: &str) -> Result<String, ApiError> {
    match crate::ssh::check_path(path) {
        Ok(()) => Ok(path.to_string()),
        Err(why) => Err(ApiError::bad_request("invalid_path", format!("{path:?}: {why}"))),
    }
}

fn mode(text: &Option<String>, default: u32) -> Result<u32, ApiError> {
    match text {
        None => Ok(default),
        Some(t) => u32::from_str_radix(t, 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| ApiError::bad_request("invalid_mode", "mode is octal, 0000 to 0777 (e.g. 0644)")),
    }
}

#[utoipa::path(
    params(("id" = String, Path, description = "EC2 instance ID or object name"),
           ("path" = String, Path, description = "the remote file's absolute path, without its leading `/`")),
    responses((status = 200, description = "the file's bytes, streamed", content_type = "application/octet-stream"),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 502, body = Problem), (status = 503, description = "`ssh_busy` (with `Retry-After`) or `audit_unavailable`", body = Problem), (status = 504, body = Problem)),
    security(("admin_key" = ["files"])),
    tag = "files"
)]
#[get("/api/ec2/instances/{id}/files/{path:.*}")]
pub async fn download(
    admin: Authorized<needs::Files>,
    state: web::Data<AdminState>,
    params: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, path) = params.into_inner();
    let prepared = async {
        let path = remote_path(&format!("/{path}"))?;
        Ok((path, connect(&state, &admin, &id).await?))
    };
    let (path, (object, connection, work)) = match prepared.await {
        Ok(ready) => ready,
        Err(e) => {
            return Err(state
                .operation(
                    &admin,
                    "api.instance.download",
                    &instance_target(&state, &admin, &id),
                    json!({"path": path}),
                )
                .refused(e)
                .await);
        }
    };
    let op = state.operation(&admin, "api.instance.download", &target(&*object), json!({"path": path}));
    let download = async { connection.download(&path).await.map_err(ApiError::from) };
    let (size, stream) =
        op.run_with(download, |(size, _)| Some(json!({"path": path, "bytes": size}))).await?;
    // The SSH operation lasts until the last byte is sent.
    let stream = stream.map(move |chunk| {
        let _ = &work;
        chunk
    });
    Ok(HttpResponse::Ok().content_type("application/octet-stream").no_chunking(size).streaming(stream))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// Absolute path of the file to write (replaced whole if it exists).
    pub destination_path: String,
    /// Octal permissions (default `0644`).
    pub mode: Option<String>,
}

/// One file written.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Written {
    pub path: String,
    pub bytes: u64,
    /// SHA-256 (hex) of the bytes written.
    pub sha256: String,
}

/// The parts of a `multipart/form-data` body (its errors become 400s through `multipart_error`).
fn parts(req: &HttpRequest, payload: web::Payload) -> actix_multipart::Multipart {
    actix_multipart::Multipart::new(req.headers(), payload)
}

/// Streams one part to `path`, hashing it on the way.
async fn write_part(
    state: &AdminState,
    connection: &crate::ssh::Connection,
    path: &str,
    mode: u32,
    field: actix_multipart::Field,
) -> Result<Written, ApiError> {
    let hasher = std::sync::Arc::new(std::sync::Mutex::new(Sha256::new()));
    let hashing = hasher.clone();
    let body = field.inspect_ok(move |chunk: &Bytes| hashing.lock().unwrap().update(chunk));
    let bytes = connection.upload(path, mode, Box::pin(body), state.limits.max_file_bytes).await?;
    let sha256 = hex::encode(hasher.lock().unwrap().clone().finalize());
    Ok(Written { path: path.to_string(), bytes, sha256 })
}

#[utoipa::path(
    params(("id" = String, Path, description = "EC2 instance ID or object name"), UploadQuery),
    request_body(content = Vec<u8>, description = "multipart/form-data with one part named `file`",
                 content_type = "multipart/form-data"),
    responses((status = 201, body = Written), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem),
              (status = 413, description = "larger than the file size limit", body = Problem),
              (status = 502, body = Problem), (status = 503, description = "`ssh_busy` (with `Retry-After`) or `audit_unavailable`", body = Problem), (status = 504, body = Problem)),
    security(("admin_key" = ["files"])),
    tag = "files"
)]
#[post("/api/ec2/instances/{id}/files")]
pub async fn upload(
    admin: Authorized<needs::Files>,
    state: web::Data<AdminState>,
    id: web::Path<String>,
    query: web::Query<UploadQuery>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let prepared = async {
        let path = remote_path(&query.destination_path)?;
        let mode = mode(&query.mode, 0o644)?;
        let mut form = parts(&req, payload);
        let field = loop {
            match form.try_next().await.map_err(crate::admin::error::multipart_error)? {
                Some(field) if field.name() == Some("file") => break field,
                Some(_) => continue,
                None => return Err(ApiError::bad_request("invalid_body", "no part named `file`")),
            }
        };
        Ok((path, mode, form, field, connect(&state, &admin, &id).await?))
    };
    // The form outlives its part: a part reads the request body through it.
    let (path, mode, _form, field, (object, connection, _work)) = match prepared.await {
        Ok(ready) => ready,
        Err(e) => {
            let params = json!({"path": query.destination_path});
            return Err(state
                .operation(&admin, "api.instance.upload", &instance_target(&state, &admin, &id), params)
                .refused(e)
                .await);
        }
    };
    let params = json!({"path": path, "mode": format!("{mode:04o}")});
    let op = state.operation(&admin, "api.instance.upload", &target(&*object), params.clone());
    let written = op
        .run_with(write_part(&state, &connection, &path, mode, field), |w| {
            Some(json!({"path": path, "mode": params["mode"], "bytes": w.bytes, "sha256": w.sha256}))
        })
        .await?;
    Ok(HttpResponse::Created().json(written))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PushFilesQuery {
    /// Absolute directory the files go into, each under its part's file name.
    pub destination_dir: String,
    /// Octal permissions (default `0644`).
    pub mode: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PushedFiles {
    pub files: Vec<Written>,
}

#[utoipa::path(
    params(("id" = String, Path, description = "EC2 instance ID or object name"), PushFilesQuery),
    request_body(content = Vec<u8>, description = "multipart/form-data; every part with a file name is written",
                 content_type = "multipart/form-data"),
    responses((status = 201, body = PushedFiles), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem),
              (status = 502, body = Problem), (status = 503, description = "`ssh_busy` (with `Retry-After`) or `audit_unavailable`", body = Problem), (status = 504, body = Problem)),
    security(("admin_key" = ["files"])),
    tag = "files"
)]
#[post("/api/ec2/instances/{id}/push-files")]
pub async fn push_files(
    admin: Authorized<needs::Files>,
    state: web::Data<AdminState>,
    id: web::Path<String>,
    query: web::Query<PushFilesQuery>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let prepared = async {
        let dir = match query.destination_dir.as_str() {
            "/" => String::new(),
            dir => remote_path(dir)?,
        };
        Ok((dir, mode(&query.mode, 0o644)?, connect(&state, &admin, &id).await?))
    };
    let (dir, mode, (object, connection, _work)) = match prepared.await {
        Ok(ready) => ready,
        Err(e) => {
            let params = json!({"destination_dir": query.destination_dir});
            return Err(state
                .operation(&admin, "api.instance.push_files", &instance_target(&state, &admin, &id), params)
                .refused(e)
                .await);
        }
    };
    let mut form = parts(&req, payload);
    let mut files = Vec::new();
    let op = state.operation(
        &admin,
        "api.instance.push_files",
        &target(&*object),
        json!({"destination_dir": query.destination_dir}),
    );
    op.start().await?;
    let result = async {
        while let Some(field) = form.try_next().await.map_err(crate::admin::error::multipart_error)? {
            let Some(name) = field.content_disposition().and_then(|d| d.get_filename()).map(str::to_string)
            else {
                continue;
            };
            let path =
                remote_path(&format!("{dir}/{name}")).ok().filter(|_| !name.contains('/')).ok_or_else(
                    || ApiError::bad_request("invalid_path", format!("{name:?} is not a plain file name")),
                )?;
            files.push(write_part(&state, &connection, &path, mode, field).await?);
        }
        match files.is_empty() {
            true => Err(ApiError::bad_request("invalid_body", "no part carries a file name")),
            false => Ok(()),
        }
    }
    .await;
    // Files written before a failure stay (each whole); the outcome lists them either way.
    let params = json!({"destination_dir": query.destination_dir, "files": files});
    op.finish(result, params).await?;
    Ok(HttpResponse::Created().json(PushedFiles { files }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// Inline JSON (an object or array, or JSON text in a string), or `s3://bucket/key` of a JSON
    /// document.
    #[schema(schema_with = config_source_schema)]
    pub config_source: serde_json::Value,
    /// Where to write it (default `/etc/dataroom/config.json`); written with mode 0600.
    pub path: Option<String>,
}

fn config_source_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let types: SchemaType = [Type::Object, Type::Array, Type::String].into_iter().collect();
    ObjectBuilder::new().schema_type(types).build()
}

/// The configuration's bytes: inline JSON as given, or the S3 object, which must be JSON too; at
/// most `max_config_bytes` of them either way.
async fn config_bytes(state: &AdminState, source: &serde_json::Value) -> Result<Vec<u8>, ApiError> {
    let invalid = |why: String| ApiError::bad_request("invalid_config", why);
    let max = state.limits.max_config_bytes;
    let too_large = |why: String| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "config_too_large", why);
    let bytes = match source {
        serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
            serde_json::to_vec_pretty(source).unwrap_or_default()
        }
        serde_json::Value::String(text) => match text.strip_prefix("s3://") {
            Some(location) => {
                let (bucket, key) = location
                    .split_once('/')
                    .filter(|(b, k)| !b.is_empty() && !k.is_empty())
                    .ok_or_else(|| invalid(format!("{text}: expected s3://bucket/key")))?;
                // Read no further than the limit: the object's size is checked before its body.
                match state.shared.imperative.get_object(bucket, key, max).await {
                    Err(e) if e.code == "ObjectTooLarge" => return Err(too_large(e.message)),
                    fetched => fetched?,
                }
            }
            None => text.clone().into_bytes(),
        },
        _ => return Err(invalid("config_source is a JSON object, JSON text, or s3://bucket/key".into())),
    };
    if bytes.len() as u64 > max {
        return Err(too_large(format!(
            "the configuration is {} bytes, more than the {max}-byte limit",
            bytes.len()
        )));
    }
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .map_err(|e| invalid(format!("the configuration is not JSON: {e}")))?;
    Ok(bytes)
}

#[utoipa::path(
    params(("id" = String, Path, description = "EC2 instance ID or object name")),
    request_body = PushConfig,
    responses((status = 201, body = Written), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem),
              (status = 413, description = "the configuration is over 1 MiB", body = Problem), (status = 502, body = Problem), (status = 503, description = "`ssh_busy` (with `Retry-After`) or `audit_unavailable`", body = Problem),
              (status = 504, body = Problem)),
    security(("admin_key" = ["files"])),
    tag = "files"
)]
#[post("/api/ec2/instances/{id}/push-config")]
pub async fn push_config(
    admin: Authorized<needs::Files>,
    state: web::Data<AdminState>,
    id: web::Path<String>,
    body: web::Json<PushConfig>,
) -> Result<HttpResponse, ApiError> {
    let source = match &body.config_source {
        serde_json::Value::String(s) if s.starts_with("s3://") => s.clone(),
        _ => "inline".to_string(),
    };
    let prepared = async {
        let path = remote_path(body.path.as_deref().unwrap_or(DEFAULT_CONFIG_PATH))?;
        let bytes = config_bytes(&state, &body.config_source).await?;
        Ok((path, bytes, connect(&state, &admin, &id).await?))
    };
    let (path, bytes, (object, connection, _work)) = match prepared.await {
        Ok(ready) => ready,
        Err(e) => {
            let params = json!({"path": body.path, "source": source});
            return Err(state
                .operation(&admin, "api.instance.push_config", &instance_target(&state, &admin, &id), params)
                .refused(e)
                .await);
        }
    };
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let body_stream =
        futures::stream::once(async move { Ok::<_, std::convert::Infallible>(Bytes::from(bytes)) });
    let params = json!({"path": path, "source": source, "sha256": sha256});
    let op = state.operation(&admin, "api.instance.push_config", &target(&*object), params);
    let write = async {
        let n = connection.upload(&path, 0o600, body_stream.boxed(), state.limits.max_file_bytes).await?;
        Ok::<_, ApiError>(Written { path: path.clone(), bytes: n, sha256: sha256.clone() })
    };
    let written = op.run(write).await?;
    Ok(HttpResponse::Created().json(written))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(download).service(upload).service(push_files).service(push_config);
}
