//! The budget page (gauges against the caps, spend per room, the limits editable by a key with
//! the budget scope) and the audit page (the log as a timeline, filtered and paged, with whether
//! the hash chain verifies and the latest signed checkpoint).

use actix_web::{HttpResponse, get, web};
use kube::ResourceExt;
use maud::{Markup, html};

use super::{PageError, Viewer, html_response, page};
use crate::admin::AdminState;
use crate::admin::routes::audit::{self, AuditQuery, Verification};
use crate::admin::scope::{Scope, needs};
use crate::controller::dataroom::key;
use crate::crd::Ec2BudgetSpec;

fn gauge(id: &str, label: &str, value: f64, max: f64, words: String) -> Markup {
    html! {
        div.gauge {
            label for=(id) { (label) }
            meter id=(id) min="0" max=(max) value=(value) high=(max * 0.8) { (words) }
            span { (words) }
        }
    }
}

fn limits_form(limits: &Ec2BudgetSpec) -> Markup {
    let fields = [
        ("maxInstances", "Most instances at once", limits.max_instances.to_string()),
        ("dailySpendUsd", "Daily spend cap (USD)", limits.daily_spend_usd.to_string()),
        ("maxInstanceType", "Largest instance type", limits.max_instance_type.clone()),
        (
            "maxLaunchesPerDay",
            "Most launches a day",
            limits.max_launches_per_day.map(|n| n.to_string()).unwrap_or_default(),
        ),
        ("defaultIdleTimeoutMinutes", "Idle stop (minutes)", limits.default_idle_timeout_minutes.to_string()),
    ];
    html! {
        form id="budget" {
            @for (name, label, value) in fields {
                label for=(name) { (label) }
                input id=(name) name=(name) value=(value);
            }
            button type="submit" { "Save limits" }
            p id="budget-result" role="status" {}
        }
    }
}

#[get("/budget")]
async fn budget(viewer: Viewer<needs::Read>, state: web::Data<AdminState>) -> HttpResponse {
    let limits = state.shared.gate.limits();
    let usage = state.shared.gate.snapshot();
    let mut spends: Vec<(String, f64)> = (state.shared.rooms.state().iter())
        .filter(|r| viewer.reaches(&r.namespace().unwrap_or_default()))
        .map(|r| (key(r), state.shared.gate.room_spend_today(&key(r))))
        .collect();
    spends.sort_by(|a, b| a.0.cmp(&b.0));
    let top = spends.iter().map(|(_, s)| *s).fold(limits.daily_spend_usd.max(0.01), f64::max);
    let editable = viewer.holds(Scope::Budget).is_ok() && state.budget_writes;
    html_response(page(
        "Budget",
        &viewer,
        html! {
            (gauge("instances-gauge", "Instances", f64::from(usage.running_instances), f64::from(limits.max_instances.max(1)),
                format!("{} of {} instances", usage.running_instances, limits.max_instances)))
            (gauge("spend-gauge", "Spend today", usage.spend_today_usd, limits.daily_spend_usd.max(0.01),
                format!("${:.4} of ${:.2} today", usage.spend_today_usd, limits.daily_spend_usd)))
            @if let Some(most) = limits.max_launches_per_day {
                (gauge("launches-gauge", "Launches today", f64::from(usage.launches_today), f64::from(most.max(1)),
                    format!("{} of {most} launches", usage.launches_today)))
            }
            h2 { "Spend per room today" }
            table.bars { tbody { @for (room, spend) in &spends { tr {
                th scope="row" { (room) }
                td { meter min="0" max=(top) value=(spend) aria-label={ "Spend of " (room) } {} }
                td { (format!("${spend:.4}")) }
            } } } }
            h2 { "Limits" }
            @if editable { (limits_form(&limits)) } @else {
                p { "Read-only: changing the budget needs the budget scope, and an operator that allows it (budget.writableThroughApi)." }
            }
        },
    ))
}

fn badge(verification: &Verification) -> Markup {
    html! {
        p.badge.intact[verification.intact] id="chain" role="status" {
            @if verification.intact {
                "Chain verified: " (verification.records) " records"
                @if let Some(seq) = verification.head_seq { ", head #" (seq) }
            } @else {
                "Chain broken: " (verification.problems.len()) " problems, first: "
                (verification.problems.first().map(|p| format!("line {}: {}", p.line, p.message)).unwrap_or_default())
            }
        }
    }
}

fn checkpoint(state: &AdminState) -> Markup {
    match state.shared.audit.checkpoint() {
        Some(c) => html! { p id="checkpoint" {
            "Latest signed checkpoint: #" (c.number) " at " (c.time) " covers record #" (c.seq) " (" (c.hash.get(..16).unwrap_or(&c.hash)) "…)"
        } },
        None => {
            html! { p id="checkpoint" { "No signed checkpoint yet: this operator signs them with --audit-signing-key." } }
        }
    }
}

fn filters(query: &AuditQuery) -> Markup {
    let fields = [
        ("action", "Action", &query.action),
        ("target", "Target", &query.target),
        ("actor", "Actor", &query.actor),
        ("since", "Since (RFC 3339)", &query.since),
        ("until", "Until (RFC 3339)", &query.until),
    ];
    html! {
        form.filters method="get" action="/ui/audit" {
            @for (name, label, value) in fields {
                label for=(name) { (label) }
                input id=(name) name=(name) value=(value.as_deref().unwrap_or(""));
            }
            button type="submit" { "Filter" }
        }
    }
}

#[get("/audit")]
async fn timeline(
    viewer: Viewer<needs::Audit>,
    state: web::Data<AdminState>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, PageError> {
    let mut query = query.into_inner();
    for field in [&mut query.action, &mut query.target, &mut query.actor, &mut query.since, &mut query.until]
    {
        *field = field.take().filter(|v| !v.is_empty());
    }
    let verification = audit::verification(&state).await?;
    let shown = filters(&query);
    let next = |after: u64| {
        let next = AuditQuery { after: Some(after), ..query.clone() };
        format!("/ui/audit?{}", serde_urlencoded::to_string(&next).expect("a query encodes"))
    };
    let records = audit::read(&state, &viewer, query.clone()).await?;
    Ok(html_response(page(
        "Audit",
        &viewer,
        html! {
            (badge(&verification))
            (checkpoint(&state))
            (shown)
            ol.timeline id="timeline" {
                @for r in &records.records { li data-outcome=(r.outcome.as_str()) {
                    time { (r.time) } " " strong { (r.action) } " " (r.outcome.as_str()) " · " (r.target) " · " (r.actor)
                    @if let Some(detail) = &r.detail { br; small { (detail) } }
                } }
            }
            @if let Some(after) = records.next_after { p { a href=(next(after)) rel="next" { "Next page" } } }
        },
    )))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(budget).service(timeline);
}
