//! `/api/ec2/instances`: lifecycle through `Ec2Instance` objects. The controller stays the only
//! writer of EC2 lifecycle; these routes create, patch and delete objects and read the
//! controller's views (its object store and its EC2 cache), never EC2 itself.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, delete, get, http::StatusCode, post, web};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::admin::auth::Admin;
use crate::admin::error::{ApiError, Problem};
use crate::admin::listing;
pub use rendered::Facets;
pub(crate) use rendered::views;
use rendered::{rendered, select};

mod rendered;
use crate::admin::lookup;
use crate::admin::scope::{Authorized, needs};
use crate::admin::{AdminState, is_dns_label};
use crate::budget::Purpose;
use crate::cloud::{Instance, InstanceState};
use crate::crd::{
    DEFAULT_INSTANCE_TYPE, Ec2Instance, Ec2InstanceSpec, Ec2InstanceStatus, PowerState, audit_name,
    audit_target,
};

/// Longest `wait` a create may ask for.
pub const MAX_WAIT_SECONDS: u64 = 300;

/// An instance as the admin API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct InstanceView {
    /// The `Ec2Instance` object's name (usable as `{id}`).
    pub name: String,
    pub namespace: String,
    /// The EC2 instance ID, once launched (also usable as `{id}`).
    pub instance_id: Option<String>,
    /// EC2 state (`pending`, `running`, `stopping`, `stopped`, …), `requested` before launch,
    /// or `deleting`.
    pub status: String,
    /// The declared power state.
    pub power_state: String,
    /// The type EC2 runs (the spec's before launch).
    pub instance_type: String,
    /// The type the spec asks for; differs from `instance_type` while a change is under way.
    pub requested_instance_type: String,
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
    /// RFC 3339.
    pub launch_time: Option<String>,
    /// Seconds since launch while running.
    pub uptime_seconds: Option<i64>,
    pub data_room_id: Option<String>,
    pub hourly_price_usd: Option<f64>,
    /// Why the instance is not where it should be, when something is in the way.
    pub message: Option<String>,
}

impl InstanceView {
    /// The view of one object, from the controller's EC2 cache where it has the instance (fresher
    /// than status) and from status otherwise. Borrows rather than clones: lists build 1,000s.
    pub fn of(state: &AdminState, object: &Ec2Instance) -> Self {
        let uid = object.metadata.uid.as_deref().unwrap_or_default();
        state.shared.cache.with(uid, |live| Self::build(state, object, live))
    }

    fn build(state: &AdminState, object: &Ec2Instance, live: Option<&Instance>) -> Self {
        let status = object.status.as_ref();
        let recorded = |f: fn(&Ec2InstanceStatus) -> &Option<String>| status.and_then(|s| f(s).clone());
        let ec2_state = live.map(|i| i.state.as_str().to_string()).or_else(|| recorded(|s| &s.state));
        let launched = match live {
            Some(i) => i.launch_time,
            None => recorded(|s| &s.launch_time).and_then(|t| t.parse().ok()),
        };
        let running = live.map(|i| i.state) == Some(InstanceState::Running)
            || (live.is_none() && ec2_state.as_deref() == Some("running"));
        let now = (state.shared.clock)().as_second();
        InstanceView {
            name: object.metadata.name.clone().unwrap_or_default(),
            namespace: object.metadata.namespace.clone().unwrap_or_default(),
            instance_id: live.map(|i| i.id.clone()).or_else(|| recorded(|s| &s.instance_id)),
            status: match (&object.meta().deletion_timestamp, ec2_state) {
                (Some(_), _) => "deleting".into(),
                (None, Some(s)) => s,
                (None, None) => "requested".into(),
            },
            power_state: power_state(object.spec.power_state).into(),
            instance_type: live
                .map(|i| i.instance_type.clone())
                .or_else(|| recorded(|s| &s.instance_type))
                .unwrap_or_else(|| object.spec.instance_type.clone()),
            requested_instance_type: object.spec.instance_type.clone(),
            public_ip: live.map_or_else(|| recorded(|s| &s.public_ip), |i| i.public_ip.clone()),
            private_ip: live.map_or_else(|| recorded(|s| &s.private_ip), |i| i.private_ip.clone()),
            launch_time: launched.map(|t| t.to_string()),
            uptime_seconds: launched.filter(|_| running).map(|t| (now - t.as_second()).max(0)),
            data_room_id: object.spec.data_room.clone(),
            hourly_price_usd: status.and_then(|s| s.hourly_price_usd),
            message: recorded(|s| &s.message),
        }
    }
}

fn power_state(p: PowerState) -> &'static str {
    match p {
        PowerState::Running => "Running",
        PowerState::Stopped => "Stopped",
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only instances in this status (see `InstanceView.status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Only instances serving this data room.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_room_id: Option<String>,
    /// At most this many (1 to 5,000), sorted by namespace and name; the next page's token is
    /// in `X-Continue` and a `Link` header (`rel="next"`). Without it, the whole list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The token of the page to read (from the previous page's `X-Continue`).
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    #[param(rename = "continue")]
    pub continue_token: Option<String>,
}

#[utoipa::path(
    params(ListQuery, ("If-None-Match" = Option<String>, Header, description = "An ETag this list gave: 304 if the page is the same")),
    responses((status = 200, body = Vec<InstanceView>,
               headers(("ETag" = String), ("X-Continue" = String, description = "the next page's token, if there is one"))),
              (status = 304, description = "the page is as the ETag named"),
              (status = 400, body = Problem), (status = 401, body = Problem)),
    security(("admin_key" = ["read"])),
    tag = "instances"
)]
#[get("/api/ec2/instances")]
pub async fn list(
    admin: Authorized<needs::Read>,
    state: web::Data<AdminState>,
    query: web::Query<ListQuery>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let items = rendered(&state);
    let (page, next) = select(&items, &admin, &query)?;
    Ok(listing::respond(&request, &page, next.as_deref(), b"[", b"]"))
}

#[utoipa::path(
    params(("id" = String, Path, description = "EC2 instance ID or object name")),
    responses((status = 200, body = InstanceView), (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("admin_key" = ["read"])),
    tag = "instances"
)]
#[get("/api/ec2/instances/{id}")]
pub async fn get_one(
    admin: Authorized<needs::Read>,
    state: web::Data<AdminState>,
    id: web::Path<String>,
) -> Result<web::Json<InstanceView>, ApiError> {
    Ok(web::Json(InstanceView::of(&state, &*lookup::instance(&state, &admin, &id)?)))
}

/// A new instance.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInstance {
    /// EC2 instance type (default `t3.micro`).
    #[serde(default = "default_type")]
    #[schema(default = default_type, example = default_type)]
    pub instance_type: String,
    /// The data room this instance serves.
    pub data_room_id: Option<String>,
    /// AMI; the operator's default image when absent.
    pub image_id: Option<String>,
    /// Object name (a DNS label); generated (`api-…`) when absent.
    pub name: Option<String>,
}

fn default_type() -> String {
    DEFAULT_INSTANCE_TYPE.into()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds to wait for the instance to be running (0–300, default 0).
    #[param(maximum = 300, minimum = 0)]
    pub wait: Option<u64>,
}

fn validate(body: &CreateInstance) -> Result<(), ApiError> {
    if !crate::crd::is_instance_type(&body.instance_type) {
        return Err(ApiError::bad_request("invalid_instance_type", "instance_type looks like `t3.micro`"));
    }
    for (field, value) in [("name", &body.name), ("data_room_id", &body.data_room_id)] {
        if value.as_deref().is_some_and(|v| !is_dns_label(v)) {
            return Err(ApiError::bad_request(
                "invalid_name",
                format!("{field} must be a DNS label: lowercase letters, digits and '-', at most 63"),
            ));
        }
    }
    if body.image_id.as_deref().is_some_and(|i| !crate::crd::is_image_id(i)) {
        return Err(ApiError::bad_request("invalid_image_id", "image_id looks like `ami-0123456789abcdef0`"));
    }
    Ok(())
}

/// Creates an `Ec2Instance` after a budget pre-check. Answers 201 with the running instance when
/// it is running before the response (see `wait`), otherwise 202 with `Location` to poll.
#[utoipa::path(
    params(WaitQuery),
    request_body = CreateInstance,
    responses(
        (status = 201, description = "running", body = InstanceView),
        (status = 202, description = "accepted; poll `Location`", body = InstanceView),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, description = "refused by the budget (`limit` names the limit), `namespace_not_allowed` or `insufficient_scope`", body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)
    ),
    security(("admin_key" = ["lifecycle"])),
    tag = "instances"
)]
#[post("/api/ec2/instances")]
pub async fn create(
    admin: Authorized<needs::Lifecycle>,
    state: web::Data<AdminState>,
    query: web::Query<WaitQuery>,
    body: web::Json<CreateInstance>,
) -> Result<HttpResponse, ApiError> {
    if !admin.reaches(&state.namespace) {
        let why = format!(
            "the key {} does not reach namespace {}, where the API creates instances",
            admin.name, state.namespace
        );
        return Err(ApiError::new(StatusCode::FORBIDDEN, "namespace_not_allowed", why));
    }
    let body = body.into_inner();
    let wait = query.wait.unwrap_or(0);
    let name = body.name.clone().unwrap_or_else(generated_name);
    let target = audit_name::<Ec2Instance>(&state.namespace, &name);
    let params = json!({"instance_type": body.instance_type, "data_room_id": body.data_room_id,
                        "image_id": body.image_id, "wait": wait});
    let op = state.operation(&admin, "api.instance.create", &target, params);
    let checked = match wait > MAX_WAIT_SECONDS {
        true => Err(ApiError::bad_request("invalid_wait", format!("wait is at most {MAX_WAIT_SECONDS}"))),
        false => validate(&body).and_then(|()| {
            let launch = state.shared.gate.launch(None);
            state.shared.gate.check(&body.instance_type, launch).map_err(|r| ApiError::budget(&r))
        }),
    };
    if let Err(e) = checked {
        return Err(op.refused(e).await);
    }
    let create = async {
        let mut object = Ec2Instance::new(
            &name,
            Ec2InstanceSpec {
                instance_type: body.instance_type.clone(),
                image_id: body.image_id.clone(),
                data_room: body.data_room_id.clone(),
                ..serde_json::from_value(json!({})).expect("the spec has defaults")
            },
        );
        object.annotations_mut().insert("dataroom.dev/created-by".into(), admin.actor());
        let api: Api<Ec2Instance> = Api::namespaced(state.shared.client.clone(), &state.namespace);
        api.create(&PostParams::default(), &object).await.map_err(|e| match e {
            kube::Error::Api(s) if s.code == 409 => ApiError::conflict("already_exists", s.message),
            e => e.into(),
        })
    };
    let created = op.run(create).await?;
    let view = wait_until_running(&state, &admin, &created, Duration::from_secs(wait)).await;
    let status = if view.status == "running" { StatusCode::CREATED } else { StatusCode::ACCEPTED };
    Ok(HttpResponse::build(status)
        .insert_header(("Location", format!("/api/ec2/instances/{name}")))
        .json(view))
}

fn generated_name() -> String {
    use rand::Rng;
    let suffix: String = rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .map(|c| (c as char).to_ascii_lowercase())
        .take(8)
        .collect();
    format!("api-{suffix}")
}

async fn wait_until_running(
    state: &AdminState,
    admin: &Admin,
    created: &Ec2Instance,
    wait: Duration,
) -> InstanceView {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let current =
            lookup::instance(state, admin, &created.name_any()).map(|o| InstanceView::of(state, &o));
        let view = current.unwrap_or_else(|_| InstanceView::of(state, created));
        if view.status == "running" || tokio::time::Instant::now() >= deadline {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn set_power(
    admin: Authorized<needs::Lifecycle>,
    state: web::Data<AdminState>,
    id: &str,
    power: PowerState,
) -> Result<HttpResponse, ApiError> {
    let action = if power == PowerState::Running { "api.instance.start" } else { "api.instance.stop" };
    let found = lookup::instance(&state, &admin, id);
    let target = found.as_deref().map_or_else(|_| id.to_string(), audit_target);
    let op = state.operation(&admin, action, &target, json!({"id": id}));
    let checked = found.and_then(|object| {
        let view = InstanceView::of(&state, &object);
        if power == PowerState::Running && object.spec.power_state == PowerState::Stopped {
            let purpose = match view.instance_id {
                Some(_) => Purpose::Start,
                None => state.shared.gate.launch(object.spec.root_volume_gib),
            };
            state.shared.gate.check(&object.spec.instance_type, purpose).map_err(|r| ApiError::budget(&r))?;
        }
        Ok((object, view))
    });
    let (object, view) = match checked {
        Ok(checked) => checked,
        Err(e) => return Err(op.refused(e).await),
    };
    let patch_power = async {
        let api: Api<Ec2Instance> = Api::namespaced(state.shared.client.clone(), &view.namespace);
        let patch = json!({"spec": {"powerState": power_state(power)}});
        let patched = api.patch(&object.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        if let Some(room) = object.room_key() {
            state.shared.touch(&room);
        }
        Ok::<_, ApiError>(InstanceView::of(&state, &patched))
    };
    let view = op.run(patch_power).await?;
    Ok(HttpResponse::Accepted().json(view))
}

#[utoipa::path(
    params(("id" = String, Path, description = "EC2 instance ID or object name")),
    responses((status = 202, body = InstanceView), (status = 401, body = Problem), (status = 403, body = Problem),
               (status = 404, body = Problem)),
    security(("admin_key" = ["lifecycle"])),
    tag = "instances"
)]
#[post("/api/ec2/instances/{id}/start")]
pub async fn start(
    admin: Authorized<needs::Lifecycle>,
    state: web::Data<AdminState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_power(admin, state, &id, PowerState::Running).await
}

#[utoipa::path(
    params(("id" = String, Path, description = "EC2 instance ID or object name")),
    responses((status = 202, body = InstanceView), (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("admin_key" = ["lifecycle"])),
    tag = "instances"
)]
#[post("/api/ec2/instances/{id}/stop")]
pub async fn stop(
    admin: Authorized<needs::Lifecycle>,
    state: web::Data<AdminState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_power(admin, state, &id, PowerState::Stopped).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConfirmQuery {
    /// Must be `true`: deleting terminates the instance.
    pub confirm: Option<bool>,
}

#[utoipa::path(
    params(("id" = String, Path, description = "EC2 instance ID or object name"), ConfirmQuery),
    responses((status = 202, description = "deletion started", body = InstanceView),
               (status = 400, description = "`confirm=true` missing", body = Problem),
               (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("admin_key" = ["lifecycle"])),
    tag = "instances"
)]
#[delete("/api/ec2/instances/{id}")]
pub async fn remove(
    admin: Authorized<needs::Lifecycle>,
    state: web::Data<AdminState>,
    id: web::Path<String>,
    query: web::Query<ConfirmQuery>,
) -> Result<HttpResponse, ApiError> {
    let found = lookup::instance(&state, &admin, &id);
    let target = found.as_deref().map_or_else(|_| id.to_string(), audit_target);
    let op = state.operation(&admin, "api.instance.delete", &target, json!({"id": &*id}));
    let checked = match query.confirm {
        Some(true) => found,
        _ => Err(ApiError::bad_request(
            "confirmation_required",
            "deleting terminates the instance: repeat the request with `?confirm=true`",
        )),
    };
    let object = match checked {
        Ok(object) => object,
        Err(e) => return Err(op.refused(e).await),
    };
    let delete = async {
        let api: Api<Ec2Instance> =
            Api::namespaced(state.shared.client.clone(), &object.namespace().unwrap_or_default());
        api.delete(&object.name_any(), &DeleteParams::default()).await?;
        let mut view = InstanceView::of(&state, &object);
        view.status = "deleting".into();
        Ok::<_, ApiError>(view)
    };
    let view = op.run(delete).await?;
    Ok(HttpResponse::Accepted().json(view))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(create).service(get_one).service(start).service(stop).service(remove);
}
