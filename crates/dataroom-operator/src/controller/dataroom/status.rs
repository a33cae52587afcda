//! One server-side-apply patch of a room's status per reconcile, skipped when nothing changed.
//! Timestamps are written only when they mean something new (`lastActivityTime` moves in steps
//! of a minute or more), so that writing status never re-triggers the room for nothing.

use jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::observe::Observed;
use super::plan::{Child, Phase};
use crate::controller::{Context, Result};
use crate::crd::{DataRoom, DataRoomState, DataRoomStatus, MANAGER, set_condition};

/// What this reconcile saw and did, as status needs it.
#[derive(Debug)]
pub struct Report {
    pub phase: Phase,
    pub reason: String,
    pub child: Option<Child>,
    /// Why the budget holds back one of the room's instances, if it does.
    pub blocked: Option<String>,
    pub instance_name: Option<String>,
    pub instance_id: Option<String>,
    pub endpoint: Option<String>,
    /// The hash of what is on the instance, when it matches the content now.
    pub config_hash: Option<String>,
    /// Whether the configuration is pushed, and what to say about it.
    pub configured: (bool, String),
    /// The latest health answer, if one was asked for.
    pub healthy: Option<(bool, String)>,
    pub boot_seconds: Option<f64>,
    pub last_activity: Option<Timestamp>,
    /// The room's DNS record, when the operator publishes rooms.
    pub dns: Option<DnsReport>,
}

/// What the zone holds for the room: the `DnsPublished` condition and `status.dnsName`.
#[derive(Debug)]
pub struct DnsReport {
    pub published: Option<String>,
    pub condition: (bool, &'static str, String),
}

impl DnsReport {
    pub fn published(name: String, address: Option<std::net::Ipv4Addr>) -> Self {
        let to = address.map_or_else(String::new, |a| format!(" → {a}"));
        Self { condition: (true, "Published", format!("{name}{to}")), published: Some(name) }
    }
    pub fn unpublished(name: String) -> Self {
        let message = format!("{name} is published only while the room is Ready");
        Self { published: None, condition: (false, "NotReady", message) }
    }
    pub fn refused(why: String) -> Self {
        Self { published: None, condition: (false, "NameTaken", why) }
    }
    pub fn failed(why: String) -> Self {
        Self { published: None, condition: (false, "PublishFailed", why) }
    }
}

impl Report {
    pub fn new(room: &DataRoom) -> Self {
        let old = room.status.clone().unwrap_or_default();
        Report {
            phase: Phase::Pending,
            reason: "starting".into(),
            child: None,
            blocked: None,
            instance_name: None,
            instance_id: None,
            endpoint: None,
            config_hash: None,
            configured: (false, "no running instance to configure".into()),
            healthy: None,
            boot_seconds: old.boot_seconds,
            last_activity: None,
            dns: None,
        }
    }

    /// What the caches showed: the instance serving the room (or being booted for it), where it
    /// answers, and what holds an instance back.
    pub fn saw(&mut self, observed: &Observed, health_port: u16) {
        let reported = observed.reported();
        let live = reported.and_then(|m| m.live.as_ref());
        self.instance_name = reported.map(|m| m.child.name.clone());
        self.instance_id = live.map(|t| t.instance_id.clone());
        self.endpoint = live.map(|t| format!("{}:{health_port}", t.ip));
        self.child = reported.map(|m| m.child.clone());
        self.blocked = observed.members.iter().filter(|m| !m.child.retiring()).find_map(|m| {
            let why = m.child.blocked.clone()?;
            Some(match reported.filter(|r| r.child.name != m.child.name) {
                None => why,
                Some(serving) => format!(
                    "a rolling upgrade needs the old and the new instance at once: {why}; {} serves the room until the budget allows {} (updateStrategy: Recreate stops the old instance first)",
                    serving.child.name, m.child.name
                ),
            })
        });
        self.last_activity = observed.last_activity;
    }

    pub fn set(&mut self, phase: Phase, reason: impl Into<String>) {
        self.phase = phase;
        self.reason = reason.into();
    }
}

pub fn build(room: &DataRoom, report: &Report) -> DataRoomStatus {
    let generation = room.meta().generation;
    let old = room.status.clone().unwrap_or_default();
    let stopping = matches!(report.phase, Phase::Stopping | Phase::Stopped);
    // An idle stop says so until the room runs again.
    let idle = old.reason.as_deref().filter(|r| r.starts_with("Idle") && stopping);
    let idle = idle.filter(|_| room.spec.state == DataRoomState::Stopped);
    let stored = old.last_activity_time.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
    let last_activity = match (stored, report.last_activity) {
        (Some(s), Some(l)) if l.duration_since(s) < SignedDuration::from_mins(1) => Some(s),
        (s, l) => l.or(s),
    };
    let mut status = DataRoomStatus {
        phase: Some(report.phase.to_string()),
        reason: Some(idle.map_or_else(|| report.reason.clone(), str::to_string)),
        endpoint: report.endpoint.clone(),
        dns_name: report.dns.as_ref().and_then(|d| d.published.clone()),
        instance_name: report.instance_name.clone(),
        instance_id: report.instance_id.clone(),
        boot_seconds: report.boot_seconds,
        config_hash: report.config_hash.clone(),
        last_activity_time: last_activity.map(|t| t.to_string()),
        observed_generation: generation,
        conditions: old.conditions,
    };
    let conditions = &mut status.conditions;
    let state = report.child.as_ref().and_then(|c| c.state.clone());
    let running = state.as_deref() == Some("running");
    let (reason, message) = match (&report.instance_id, state) {
        (Some(id), Some(s)) => {
            (if running { "Running" } else { "NotRunning" }, format!("instance {id} is {s}"))
        }
        _ => ("NoInstance", "no instance is launched".to_string()),
    };
    set_condition(conditions, "InstanceReady", running, reason, message, generation);
    let (pushed, message) = report.configured.clone();
    set_condition(
        conditions,
        "Configured",
        pushed,
        if pushed { "Pushed" } else { "NotPushed" },
        message,
        generation,
    );
    let (healthy, message) =
        report.healthy.clone().unwrap_or((false, "not checked: no configured, running instance".into()));
    let reason = match (&report.healthy, healthy) {
        (None, _) => "NotChecked",
        (Some(_), true) => "Healthy",
        (Some(_), false) => "Unhealthy",
    };
    set_condition(conditions, "Healthy", healthy, reason, message, generation);
    let (reason, message) = match &report.blocked {
        Some(why) => ("BudgetExceeded", why.clone()),
        None => ("WithinBudget", "the budget allows this room's instance".to_string()),
    };
    set_condition(conditions, "BudgetAllowed", report.blocked.is_none(), reason, message, generation);
    if let Some(DnsReport { condition: (published, reason, message), .. }) = &report.dns {
        set_condition(conditions, "DnsPublished", *published, reason, message.clone(), generation);
    }
    status
}

pub async fn write(room: &DataRoom, ctx: &Context, report: &Report) -> Result<()> {
    let status = build(room, report);
    if room.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<DataRoom> = Api::namespaced(ctx.client.clone(), &room.namespace().unwrap_or_default());
    let patch = json!({ "apiVersion": "dataroom.dev/v1alpha1", "kind": "DataRoom", "status": status });
    let params = PatchParams::apply(MANAGER).force();
    api.patch_status(&room.name_any(), &params, &Patch::Apply(&patch)).await?;
    Ok(())
}
