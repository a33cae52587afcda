//! `/api/ec2/amis` and `/api/ec2/keypairs`: AMIs made from managed instances (tracked until
//! available, audited when they settle) and key pairs whose private keys go to Secrets Manager
//! only and are never returned.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::admin::AdminState;
use crate::admin::auth::Admin;
use crate::admin::error::{ApiError, Problem};
use crate::admin::lookup;
use crate::admin::routes::instances::InstanceView;
use crate::admin::scope::{Authorized, needs};
use crate::audit::Outcome;
use crate::cloud::{Image, Imperative, keys, ssh_secret_name};

/// How long a new AMI is followed.
const TRACK_FOR: Duration = Duration::from_secs(3 * 3600);

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AmiView {
    pub image_id: String,
    pub name: String,
    /// `pending`, `available`, `failed`, …
    pub state: String,
    pub creation_date: Option<String>,
}

impl From<Image> for AmiView {
    fn from(i: Image) -> Self {
        AmiView { image_id: i.id, name: i.name, state: i.state, creation_date: i.creation_date }
    }
}

#[utoipa::path(
    responses((status = 200, description = "AMIs owned by this account", body = Vec<AmiView>),
              (status = 401, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem)),
    security(("admin_key" = ["read"])),
    tag = "images"
)]
#[get("/api/ec2/amis")]
pub async fn list_amis(
    _: Authorized<needs::Read>,
    state: web::Data<AdminState>,
) -> Result<web::Json<Vec<AmiView>>, ApiError> {
    let images = state.shared.imperative.describe_images(&[]).await?;
    Ok(web::Json(images.into_iter().map(AmiView::from).collect()))
}

#[utoipa::path(
    params(("image_id" = String, Path, description = "AMI ID")),
    responses((status = 200, body = AmiView), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 404, body = Problem)),
    security(("admin_key" = ["read"])),
    tag = "images"
)]
#[get("/api/ec2/amis/{image_id}")]
pub async fn get_ami(
    _: Authorized<needs::Read>,
    state: web::Data<AdminState>,
    image_id: web::Path<String>,
) -> Result<web::Json<AmiView>, ApiError> {
    if !crate::crd::is_image_id(&image_id) {
        return Err(ApiError::bad_request("invalid_image_id", "an AMI ID looks like ami-0123456789abcdef0"));
    }
    let images = state.shared.imperative.describe_images(std::slice::from_ref(&image_id)).await?;
    let image = images.into_iter().next().ok_or_else(|| ApiError::not_found(&format!("AMI {image_id}")))?;
    Ok(web::Json(image.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAmi {
    /// EC2 instance ID or object name of a managed instance.
    pub instance_id: String,
    /// 3–128 characters: letters, digits and `( ) [ ] . / - ' @ _` or spaces.
    pub ami_name: String,
}

fn valid_ami_name(name: &str) -> bool {
    (3..=128).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "()[]./-'@_ ".contains(c))
}

/// Starts an AMI from a managed instance; `202` with `Location` to follow it. The operator
/// follows it too and audits `api.ami.available` or `api.ami.failed` when it settles.
#[utoipa::path(
    request_body = CreateAmi,
    responses((status = 202, body = AmiView), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("admin_key" = ["images"])),
    tag = "images"
)]
#[post("/api/ec2/amis")]
pub async fn create_ami(
    admin: Authorized<needs::Images>,
    state: web::Data<AdminState>,
    body: web::Json<CreateAmi>,
) -> Result<HttpResponse, ApiError> {
    let params = json!({"instance": body.instance_id, "ami_name": body.ami_name});
    let op = state.operation(
        &admin,
        "api.ami.create",
        &lookup::instance_target(&state, &admin, &body.instance_id),
        params,
    );
    let instance_id = match ami_source(&state, &admin, &body) {
        Ok(instance_id) => instance_id,
        Err(e) => return Err(op.refused(e).await),
    };
    let create = state.shared.imperative.create_image(&instance_id, &body.ami_name);
    let image_id = op.run(async { create.await.map_err(ApiError::from) }).await?;
    tokio::spawn(track(state.clone().into_inner(), admin.actor(), image_id.clone()));
    let view = AmiView {
        image_id: image_id.clone(),
        name: body.ami_name.clone(),
        state: "pending".into(),
        creation_date: None,
    };
    Ok(HttpResponse::Accepted().insert_header(("Location", format!("/api/ec2/amis/{image_id}"))).json(view))
}

/// The EC2 instance an AMI can be made of (running or stopped), after checking the request.
fn ami_source(state: &AdminState, admin: &Admin, body: &CreateAmi) -> Result<String, ApiError> {
    if !valid_ami_name(&body.ami_name) {
        let why = "ami_name: 3-128 letters, digits, spaces, ()[]./-'@_";
        return Err(ApiError::bad_request("invalid_name", why));
    }
    let view = InstanceView::of(state, &*lookup::instance(state, admin, &body.instance_id)?);
    let instance_id = view.instance_id.filter(|_| view.status == "running" || view.status == "stopped");
    instance_id.ok_or_else(|| {
        ApiError::conflict("instance_not_ready", format!("instance {} is {}", body.instance_id, view.status))
    })
}

/// Follows a new AMI until it settles, then audits the result.
async fn track(state: Arc<AdminState>, actor: String, image_id: String) {
    let deadline = tokio::time::Instant::now() + TRACK_FOR;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(state.ami_poll).await;
        let Ok(images) = state.shared.imperative.describe_images(std::slice::from_ref(&image_id)).await
        else {
            continue;
        };
        let Some(image) = images.into_iter().next() else { continue };
        let outcome = match image.state.as_str() {
            "available" => Outcome::Success,
            "pending" => continue,
            _ => Outcome::Failure,
        };
        let action = if outcome == Outcome::Success { "api.ami.available" } else { "api.ami.failed" };
        let target = lookup::unnamespaced_target("image", &image_id);
        let op = state.shared.operation(&actor, action, &target, json!({"state": image.state}));
        if let Err(e) = op.record(outcome, None, None).await {
            tracing::warn!(error = %e, %image_id, "the AMI's outcome is not in the audit log");
        }
        return;
    }
    tracing::warn!(%image_id, "the AMI did not settle while it was followed");
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyPairView {
    pub name: String,
    pub fingerprint: Option<String>,
    pub key_type: Option<String>,
    /// Name of the Secrets Manager secret holding the private key (never the key).
    pub secret_name: String,
}

fn key_view(pair: crate::cloud::KeyPair) -> KeyPairView {
    let secret_name = ssh_secret_name(&pair.name);
    KeyPairView { name: pair.name, fingerprint: pair.fingerprint, key_type: pair.key_type, secret_name }
}

#[utoipa::path(
    responses((status = 200, body = Vec<KeyPairView>), (status = 401, body = Problem), (status = 502, body = Problem),
              (status = 503, body = Problem)),
    security(("admin_key" = ["read"])),
    tag = "images"
)]
#[get("/api/ec2/keypairs")]
pub async fn list_keypairs(
    _: Authorized<needs::Read>,
    state: web::Data<AdminState>,
) -> Result<web::Json<Vec<KeyPairView>>, ApiError> {
    let pairs = state.shared.imperative.describe_key_pairs(&[]).await?;
    Ok(web::Json(pairs.into_iter().map(key_view).collect()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyPair {
    /// 1–255 characters: letters, digits, `.`, `_`, `-`.
    pub name: String,
}

fn valid_key_name(name: &str) -> bool {
    (1..=255).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

#[utoipa::path(
    request_body = CreateKeyPair,
    responses((status = 201, body = KeyPairView), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 409, body = Problem)),
    security(("admin_key" = ["keypairs"])),
    tag = "images"
)]
#[post("/api/ec2/keypairs")]
pub async fn create_keypair(
    admin: Authorized<needs::Keypairs>,
    state: web::Data<AdminState>,
    body: web::Json<CreateKeyPair>,
) -> Result<HttpResponse, ApiError> {
    let target = lookup::unnamespaced_target("keypair", &body.name);
    let op = state.operation(&admin, "api.keypair.create", &target, json!({}));
    let cloud: &dyn Imperative = state.shared.imperative.as_ref();
    let checked = async {
        if !valid_key_name(&body.name) {
            return Err(ApiError::bad_request("invalid_name", "name: 1-255 letters, digits, '.', '_', '-'"));
        }
        if !cloud.describe_key_pairs(std::slice::from_ref(&body.name)).await?.is_empty() {
            return Err(ApiError::conflict("already_exists", format!("key pair {} exists", body.name)));
        }
        Ok(())
    };
    if let Err(e) = checked.await {
        return Err(op.refused(e).await);
    }
    let made = keys::ensure_key_pair(cloud, &body.name);
    let view = op.run(async { made.await.map(|(pair, _)| key_view(pair)).map_err(ApiError::from) }).await?;
    Ok(HttpResponse::Created().json(view))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteKeyQuery {
    /// Must be `true`: the private key is destroyed with the key pair.
    pub confirm: Option<bool>,
}

#[utoipa::path(
    params(("name" = String, Path, description = "key pair name"), DeleteKeyQuery),
    responses((status = 204, description = "deleted (or already gone)"), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 409, description = "a managed instance uses it", body = Problem)),
    security(("admin_key" = ["keypairs"])),
    tag = "images"
)]
#[delete("/api/ec2/keypairs/{name}")]
pub async fn delete_keypair(
    admin: Authorized<needs::Keypairs>,
    state: web::Data<AdminState>,
    name: web::Path<String>,
    query: web::Query<DeleteKeyQuery>,
) -> Result<HttpResponse, ApiError> {
    let target = lookup::unnamespaced_target("keypair", &name);
    let op = state.operation(&admin, "api.keypair.delete", &target, json!({}));
    let in_use =
        state.shared.cache.any(|i| i.key_name.as_deref() == Some(name.as_str()) && !i.state.is_gone());
    let refusal = match (query.confirm == Some(true), in_use) {
        (false, _) => Some(ApiError::bad_request(
            "confirmation_required",
            "deleting destroys the private key: repeat with `?confirm=true`",
        )),
        (true, true) => {
            Some(ApiError::conflict("key_pair_in_use", format!("a managed instance uses key pair {name}")))
        }
        (true, false) => None,
    };
    if let Some(e) = refusal {
        return Err(op.refused(e).await);
    }
    let deleted = keys::delete_key_pair(state.shared.imperative.as_ref(), &name);
    op.run(async { deleted.await.map_err(ApiError::from) }).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_amis)
        .service(create_ami)
        .service(get_ami)
        .service(list_keypairs)
        .service(create_keypair)
        .service(delete_keypair);
}
