//! The fleet page: every room the viewer reaches, with phase, address, uptime, spend today and
//! time to the idle stop, and start and stop buttons (which call the fleet API). The rows are
//! what `live` streams again whenever the controller changes something.

use actix_web::{HttpResponse, get, web};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use maud::{Markup, html};
use serde::Serialize;

use super::{Viewer, duration, html_response, page};
use crate::admin::AdminState;
use crate::admin::auth::Admin;
use crate::admin::routes::fleet::RoomView;
use crate::admin::routes::instances::InstanceView;
use crate::admin::scope::needs;
use crate::crd::{DataRoom, Ec2Instance};

/// One room as the fleet table shows it: words, not data.
#[derive(Debug, PartialEq, Serialize)]
pub struct FleetRow {
    pub key: String,
    pub namespace: String,
    pub name: String,
    pub state: String,
    pub phase: String,
    pub reason: String,
    pub address: String,
    pub uptime: String,
    pub spend_today: String,
    pub idle_stop: String,
    pub instance: Option<String>,
}

impl FleetRow {
    fn of(state: &AdminState, room: &DataRoom) -> Self {
        let view = RoomView::of(state, room);
        let dns_name = room.status.as_ref().and_then(|s| s.dns_name.clone());
        let namespace = view.namespace.clone();
        let instance = view.instance_name.as_ref().and_then(|name| {
            state.shared.instances.get(&ObjectRef::<Ec2Instance>::new(name).within(&namespace))
        });
        let instance = instance.map(|o| InstanceView::of(state, &o));
        let now = (state.shared.clock)();
        let idle_stop = match (view.phase.as_deref(), view.idle_timeout_minutes, &view.last_activity_time) {
            (_, 0, _) => "never".to_string(),
            (Some("Ready"), minutes, Some(last)) => last.parse::<jiff::Timestamp>().map_or_else(
                |_| "—".into(),
                |last| {
                    let left = last.as_second() + i64::from(minutes) * 60 - now.as_second();
                    format!("in {}", duration(left.max(0)))
                },
            ),
            _ => "—".to_string(),
        };
        FleetRow {
            key: format!("{namespace}/{}", view.name),
            name: view.name,
            namespace,
            state: view.state,
            phase: view.phase.unwrap_or_else(|| "Pending".into()),
            reason: view.reason.unwrap_or_default(),
            address: dns_name.or(view.endpoint).unwrap_or_else(|| "—".into()),
            uptime: instance.as_ref().and_then(|i| i.uptime_seconds).map_or_else(|| "—".into(), duration),
            spend_today: format!("${:.4}", view.spend_today_usd),
            idle_stop,
            instance: instance.map(|i| i.instance_id.unwrap_or(i.name)),
        }
    }
}

/// The rooms `admin` reaches, sorted by namespace and name.
pub fn rows(state: &AdminState, admin: &Admin) -> Vec<FleetRow> {
    let mut rooms: Vec<_> = state
        .shared
        .rooms
        .state()
        .into_iter()
        .filter(|r| admin.reaches(&r.namespace().unwrap_or_default()))
        .collect();
    rooms.sort_by_key(|r| (r.namespace(), r.name_any()));
    rooms.iter().map(|r| FleetRow::of(state, r)).collect()
}

fn row(r: &FleetRow) -> Markup {
    html! {
        tr data-key=(r.key) {
            td { (r.namespace) "/" strong { (r.name) } }
            td.phase data-phase=(r.phase) { (r.phase) @if !r.reason.is_empty() { br; small { (r.reason) } } }
            td { (r.address) }
            td { (r.uptime) }
            td { (r.spend_today) }
            td { (r.idle_stop) }
            td {
                @if let Some(instance) = &r.instance { a href={ "/ui/instances/" (instance) } { "instance" } " " }
                @if r.state == "Stopped" {
                    button type="button" data-room=(r.key) data-action="start" { "Start " span.sr-only { (r.name) } }
                } @else {
                    button type="button" data-room=(r.key) data-action="stop" { "Stop " span.sr-only { (r.name) } }
                }
            }
        }
    }
}

/// The table body for `rows` (also what the live stream sends).
pub fn table_body(rows: &[FleetRow]) -> Markup {
    html! {
        @for r in rows { (row(r)) }
        @if rows.is_empty() { tr { td colspan="7" { "No rooms yet: kubectl apply -f examples/dataroom.yaml" } } }
    }
}

#[get("/fleet")]
async fn fleet(viewer: Viewer<needs::Read>, state: web::Data<AdminState>) -> HttpResponse {
    let rows = rows(&state, &viewer);
    html_response(page(
        "Fleet",
        &viewer,
        html! {
            p.notice role="status" aria-live="polite" id="notice" {}
            table id="fleet" data-live="/ui/events" {
                caption { "Data rooms, updated as the controller works" }
                thead { tr {
                    th scope="col" { "Room" } th scope="col" { "Phase" } th scope="col" { "Address" }
                    th scope="col" { "Uptime" } th scope="col" { "Spend today" } th scope="col" { "Idle stop" }
                    th scope="col" { "Actions" }
                } }
                tbody id="fleet-rows" { (table_body(&rows)) }
            }
        },
    ))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(fleet);
}
