//! `/api/fleet/rooms`: the DataRooms, each with its phase and its spend today, and start/stop,
//! which set the room's `spec.state` (the DataRoom controller does the work).

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::admin::error::{ApiError, Problem};
use crate::admin::listing::{self, Item, Paging};
use crate::admin::lookup;
use crate::admin::scope::{Authorized, needs};
use crate::admin::{AdminState, is_dns_label};
use crate::controller::dataroom::key;
use crate::crd::{DEFAULT_INSTANCE_TYPE, DataRoom, DataRoomState, audit_name};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoomView {
    pub namespace: String,
    pub name: String,
    /// The declared state: `Running` or `Stopped`.
    pub state: String,
    /// Pending, Provisioning, Configuring, Ready, Stopping, Stopped, Failed or BudgetBlocked.
    pub phase: Option<String>,
    /// What the controller is doing, or what to change.
    pub reason: Option<String>,
    /// `address:port` of the room's server while it runs.
    pub endpoint: Option<String>,
    pub instance_name: Option<String>,
    pub instance_id: Option<String>,
    pub instance_type: Option<String>,
    pub boot_seconds: Option<f64>,
    /// RFC 3339.
    pub last_activity_time: Option<String>,
    /// Minutes without activity before the room is stopped (0: never).
    pub idle_timeout_minutes: u32,
    /// Dollars its instances have cost so far today (UTC).
    pub spend_today_usd: f64,
}

impl RoomView {
    pub(crate) fn of(state: &AdminState, room: &DataRoom) -> Self {
        let status = room.status.clone().unwrap_or_default();
        let limits = state.shared.gate.limits();
        RoomView {
            namespace: room.namespace().unwrap_or_default(),
            name: room.name_any(),
            state: format!("{:?}", room.spec.state),
            phase: status.phase,
            reason: status.reason,
            endpoint: status.endpoint,
            instance_name: status.instance_name,
            instance_id: status.instance_id,
            instance_type: room.spec.instance_type.clone(),
            boot_seconds: status.boot_seconds,
            last_activity_time: status.last_activity_time,
            idle_timeout_minutes: room
                .spec
                .idle_timeout_minutes
                .unwrap_or(limits.default_idle_timeout_minutes),
            spend_today_usd: state.shared.gate.room_spend_today(&key(room)),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoomList {
    pub rooms: Vec<RoomView>,
    /// The next page's token (`?continue=`), when `limit` cut the list.
    #[serde(default, rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RoomQuery {
    /// Only rooms in this namespace.
    pub namespace: Option<String>,
    /// At most this many (1 to 5,000), sorted by namespace and name. Without it, every room.
    pub limit: Option<u32>,
    /// The token of the page to read (the previous page's `continue`).
    #[serde(rename = "continue")]
    #[param(rename = "continue")]
    pub continue_token: Option<String>,
}

#[utoipa::path(
    params(RoomQuery, ("If-None-Match" = Option<String>, Header, description = "An ETag this list gave: 304 if the page is the same")),
    responses((status = 200, body = RoomList, headers(("ETag" = String))),
              (status = 304, description = "the page is as the ETag named"),
              (status = 400, body = Problem), (status = 401, body = Problem)),
    security(("admin_key" = ["read"])),
    tag = "fleet"
)]
#[get("/api/fleet/rooms")]
pub async fn list_rooms(
    admin: Authorized<needs::Read>,
    state: web::Data<AdminState>,
    query: web::Query<RoomQuery>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if query.namespace.as_deref().is_some_and(|ns| !is_dns_label(ns)) {
        return Err(ApiError::bad_request("invalid_name", "namespace is a DNS label"));
    }
    let paging = Paging::parse(query.limit, query.continue_token.as_deref())?;
    let mut rooms: Vec<Item> = state
        .shared
        .rooms
        .state()
        .iter()
        .filter(|r| admin.reaches(r.namespace().as_deref().unwrap_or_default()))
        .filter(|r| query.namespace.is_none() || r.namespace() == query.namespace)
        .map(|r| RoomView::of(&state, r))
        .map(|v| Item::render(v.namespace.clone(), v.name.clone(), (), &v))
        .collect();
    rooms.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let (page, next) = paging.page(rooms.iter());
    // The body is `{"rooms":[…]}`, with `"continue"` after the list when there is a next page.
    let suffix = match &next {
        Some(token) => format!("],\"continue\":{}}}", serde_json::Value::from(token.as_str())),
        None => "]}".to_string(),
    };
    Ok(listing::respond(&request, &page, next.as_deref(), b"{\"rooms\":[", suffix.as_bytes()))
}

#[utoipa::path(
    params(("namespace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = RoomView), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 404, body = Problem)),
    security(("admin_key" = ["read"])),
    tag = "fleet"
)]
#[get("/api/fleet/rooms/{namespace}/{name}")]
pub async fn get_room(
    admin: Authorized<needs::Read>,
    state: web::Data<AdminState>,
    path: web::Path<(String, String)>,
) -> Result<web::Json<RoomView>, ApiError> {
    let room = lookup::room(&state, &admin, &path.0, &path.1)?;
    Ok(web::Json(RoomView::of(&state, &room)))
}

#[utoipa::path(
    params(("namespace" = String, Path), ("name" = String, Path)),
    responses((status = 202, description = "the room will boot", body = RoomView),
              (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, description = "the budget would refuse its instance", body = Problem),
              (status = 404, body = Problem)),
    security(("admin_key" = ["lifecycle"])),
    tag = "fleet"
)]
#[post("/api/fleet/rooms/{namespace}/{name}/start")]
pub async fn start_room(
    admin: Authorized<needs::Lifecycle>,
    state: web::Data<AdminState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    set_state(admin, state, &path.0, &path.1, DataRoomState::Running).await
}

#[utoipa::path(
    params(("namespace" = String, Path), ("name" = String, Path)),
    responses((status = 202, description = "the room will stop and its instance be terminated", body = RoomView),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("admin_key" = ["lifecycle"])),
    tag = "fleet"
)]
#[post("/api/fleet/rooms/{namespace}/{name}/stop")]
pub async fn stop_room(
    admin: Authorized<needs::Lifecycle>,
    state: web::Data<AdminState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    set_state(admin, state, &path.0, &path.1, DataRoomState::Stopped).await
}

async fn set_state(
    admin: Authorized<needs::Lifecycle>,
    state: web::Data<AdminState>,
    namespace: &str,
    name: &str,
    want: DataRoomState,
) -> Result<HttpResponse, ApiError> {
    let action = if want == DataRoomState::Running { "api.room.start" } else { "api.room.stop" };
    let target = audit_name::<DataRoom>(namespace, name);
    let op = state.operation(&admin, action, &target, json!({}));
    let checked = lookup::room(&state, &admin, namespace, name).and_then(|room| {
        if want == DataRoomState::Running && room.spec.state == DataRoomState::Stopped {
            let instance_type = room.spec.instance_type.as_deref().unwrap_or(DEFAULT_INSTANCE_TYPE);
            let launch = state.shared.gate.launch(None);
            state.shared.gate.check(instance_type, launch).map_err(|r| ApiError::budget(&r))?;
        }
        Ok(room)
    });
    if let Err(e) = checked {
        return Err(op.refused(e).await);
    }
    let view = op
        .run(async {
            let api: Api<DataRoom> = Api::namespaced(state.shared.client.clone(), namespace);
            let patch = json!({ "spec": { "state": want } });
            let patched = api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            state.shared.touch(&key(&patched));
            Ok::<_, ApiError>(RoomView::of(&state, &patched))
        })
        .await?;
    Ok(HttpResponse::Accepted().json(view))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_rooms).service(get_room).service(start_room).service(stop_room);
}
