//! The instances table (filtered and paged as the list route is) and an instance's page: what it
//! is, its conditions, its Kubernetes events and audit history, power buttons, an exec console
//! that streams output, and file upload (with progress) and download. The buttons and forms call
//! the API (see `assets/console.js`), so they are refused exactly as the API refuses them.

use actix_web::{HttpResponse, get, web};
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use maud::{Markup, html};

use super::{PageError, Viewer, duration, html_response, page};
use crate::admin::AdminState;
use crate::admin::lookup;
use crate::admin::routes::audit::{self, AuditQuery};
use crate::admin::routes::instances::{InstanceView, ListQuery, views};
use crate::admin::scope::{Scope, needs};
use crate::crd::{Ec2Instance, audit_target};

/// Rows per page of the table.
const PAGE: u32 = 50;

fn link(view: &InstanceView) -> String {
    format!("/ui/instances/{}", view.instance_id.as_deref().unwrap_or(&view.name))
}

fn or_dash(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("—")
}

#[get("/instances")]
async fn list(
    viewer: Viewer<needs::Read>,
    state: web::Data<AdminState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, PageError> {
    let mut query = query.into_inner();
    query.status = query.status.filter(|s| !s.is_empty());
    query.data_room_id = query.data_room_id.filter(|s| !s.is_empty());
    query.limit = Some(query.limit.unwrap_or(PAGE));
    let (instances, next) = views(&state, &viewer, &query)?;
    let next_href = next.map(|token| {
        let next = ListQuery { continue_token: Some(token), ..query.clone() };
        format!("/ui/instances?{}", serde_urlencoded::to_string(&next).expect("a query encodes"))
    });
    let statuses = ["", "requested", "pending", "running", "stopping", "stopped", "deleting"];
    Ok(html_response(page(
        "Instances",
        &viewer,
        html! {
            form.filters method="get" action="/ui/instances" {
                label for="status" { "Status" }
                select id="status" name="status" {
                    @for s in statuses {
                        option value=(s) selected[query.status.as_deref().unwrap_or("") == s] {
                            @if s.is_empty() { "any" } @else { (s) }
                        }
                    }
                }
                label for="data_room_id" { "Data room" }
                input id="data_room_id" name="data_room_id" value=(query.data_room_id.as_deref().unwrap_or(""));
                button type="submit" { "Filter" }
            }
            table id="instances" {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Instance" } th scope="col" { "Status" }
                    th scope="col" { "Type" } th scope="col" { "Address" } th scope="col" { "Uptime" }
                    th scope="col" { "Room" }
                } }
                tbody {
                    @for i in &instances { tr {
                        td { a href=(link(i)) { (i.namespace) "/" (i.name) } }
                        td { (or_dash(&i.instance_id)) }
                        td { (i.status) }
                        td { (i.instance_type) }
                        td { (or_dash(&i.private_ip)) }
                        td { (i.uptime_seconds.map_or_else(|| "—".into(), duration)) }
                        td { (or_dash(&i.data_room_id)) }
                    } }
                    @if instances.is_empty() { tr { td colspan="7" { "No instance matches." } } }
                }
            }
            @if let Some(href) = next_href { p { a href=(href) rel="next" { "Next page" } } }
        },
    )))
}

/// The object's Events, newest last (empty when the API server cannot list them).
async fn events(state: &AdminState, object: &Ec2Instance) -> Vec<Event> {
    let api: Api<Event> =
        Api::namespaced(state.shared.client.clone(), &object.namespace().unwrap_or_default());
    let selector = format!("regarding.name={},regarding.kind=Ec2Instance", object.name_any());
    let mut events =
        api.list(&ListParams::default().fields(&selector)).await.map(|l| l.items).unwrap_or_default();
    events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    events
}

fn summary(view: &InstanceView) -> Markup {
    let rows = [
        ("Status", view.status.clone()),
        ("Power state", view.power_state.clone()),
        ("Type", view.instance_type.clone()),
        ("Instance", or_dash(&view.instance_id).to_string()),
        ("Private address", or_dash(&view.private_ip).to_string()),
        ("Public address", or_dash(&view.public_ip).to_string()),
        ("Launched", or_dash(&view.launch_time).to_string()),
        ("Uptime", view.uptime_seconds.map_or_else(|| "—".into(), duration)),
        ("Data room", or_dash(&view.data_room_id).to_string()),
        ("Message", or_dash(&view.message).to_string()),
    ];
    html! { dl.summary { @for (term, value) in rows { dt { (term) } dd { (value) } } } }
}

fn tools(id: &str, can_exec: bool, can_move_files: bool) -> Markup {
    html! {
        section aria-labelledby="exec-title" {
            h2 id="exec-title" { "Run a command" }
            @if can_exec {
                form id="exec" data-instance=(id) {
                    label for="command" { "Command" }
                    input id="command" name="command" required autocomplete="off" spellcheck="false";
                    button type="submit" { "Run" }
                }
                pre id="exec-output" aria-live="polite" aria-label="Output" {}
                p id="exec-result" role="status" {}
            } @else { p { "This session's key does not hold the exec scope." } }
        }
        section aria-labelledby="files-title" {
            h2 id="files-title" { "Files" }
            @if can_move_files {
                form id="upload" data-instance=(id) {
                    label for="upload-file" { "File" }
                    input type="file" id="upload-file" name="file" required;
                    label for="upload-path" { "Destination path" }
                    input id="upload-path" name="destination_path" value="/tmp/" required;
                    button type="submit" { "Upload" }
                    progress id="upload-progress" max="100" value="0" aria-label="Upload progress" {}
                    p id="upload-result" role="status" {}
                }
                form id="download" data-instance=(id) {
                    label for="download-path" { "Download path" }
                    input id="download-path" name="path" required;
                    button type="submit" { "Download" }
                }
            } @else { p { "This session's key does not hold the files scope." } }
        }
    }
}

#[get("/instances/{id}")]
async fn one(
    viewer: Viewer<needs::Read>,
    state: web::Data<AdminState>,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let object = lookup::instance(&state, &viewer, &id)?;
    let view = InstanceView::of(&state, &object);
    let conditions = object.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let events = events(&state, &object).await;
    let history = match viewer.holds(Scope::Audit) {
        Ok(()) => {
            let query = AuditQuery { target: Some(audit_target(&*object)), ..Default::default() };
            Some(audit::latest(&state, &viewer, query, 20).await?)
        }
        Err(_) => None,
    };
    let id = view.instance_id.clone().unwrap_or_else(|| view.name.clone());
    let title = format!("{}/{}", view.namespace, view.name);
    Ok(html_response(page(
        &title,
        &viewer,
        html! {
            p.notice role="status" aria-live="polite" id="notice" {}
            (summary(&view))
            p {
                button type="button" data-instance=(id) data-action="start" { "Start" } " "
                button type="button" data-instance=(id) data-action="stop" { "Stop" }
            }
            (tools(&id, viewer.holds(Scope::Exec).is_ok(), viewer.holds(Scope::Files).is_ok()))
            h2 { "Conditions" }
            table { thead { tr { th { "Type" } th { "Status" } th { "Reason" } th { "Message" } } }
                tbody { @for c in &conditions { tr { td { (c.type_) } td { (c.status) } td { (c.reason) } td { (c.message) } } } } }
            h2 { "Events" }
            table { thead { tr { th { "Time" } th { "Type" } th { "Reason" } th { "Note" } } }
                tbody { @for e in &events { tr {
                    td { (e.event_time.as_ref().map(|t| t.0.to_string()).unwrap_or_default()) }
                    td { (e.type_.clone().unwrap_or_default()) } td { (e.reason.clone().unwrap_or_default()) }
                    td { (e.note.clone().unwrap_or_default()) }
                } } } }
            h2 { "Audit history (latest first)" }
            @match history {
                Some(records) => { table { thead { tr { th { "Time" } th { "Actor" } th { "Action" } th { "Outcome" } } }
                    tbody { @for r in &records { tr {
                        td { (r.time) } td { (r.actor) } td { (r.action) } td { (r.outcome.as_str()) }
                    } } } } }
                None => { p { "This session's key does not hold the audit scope." } }
            }
        },
    )))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(one);
}
